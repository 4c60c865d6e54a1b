"""Checkpoints: safetensors weights + JSON config + a state file, written to a temporary folder and renamed."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_file, save_file

WEIGHTS, EMA_WEIGHTS, CONFIG, STATE = "model.safetensors", "ema.safetensors", "config.json", "state.pt"


def _tensors(module: torch.nn.Module) -> dict:
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def save_checkpoint(folder: Path, model, ema_model, config: dict, state: dict) -> Path:
    """Write a complete checkpoint folder atomically: nothing half-written is ever visible under `folder`."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(_tensors(model), str(tmp / WEIGHTS))
    if ema_model is not None:
        save_file(_tensors(ema_model), str(tmp / EMA_WEIGHTS))
    (tmp / CONFIG).write_text(json.dumps(config, indent=2))
    torch.save(state, tmp / STATE)
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
        os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, folder)
    latest = folder.parent / "latest"
    tmp_latest = folder.parent / f".latest.tmp-{os.getpid()}"
    tmp_latest.write_text(folder.name)
    os.replace(tmp_latest, latest)
    return folder


def find_checkpoint(path) -> Path:
    """A checkpoint folder from itself, a run folder or a checkpoints folder (the latest one)."""
    path = Path(path)
    for candidate in (path, path / "checkpoints"):
        if (candidate / CONFIG).exists() and (candidate / WEIGHTS).exists():
            return candidate
        if (candidate / "latest").exists():
            return candidate / (candidate / "latest").read_text().strip()
    raise FileNotFoundError(f"checkpoint: no checkpoint at {path} (expected a folder with {CONFIG} and {WEIGHTS}, "
                            f"or a run folder with checkpoints/latest)")


def load_weights(folder: Path, ema: bool = True) -> dict:
    """The EMA weights if present and asked for, else the raw weights."""
    folder = Path(folder)
    f = folder / EMA_WEIGHTS if ema and (folder / EMA_WEIGHTS).exists() else folder / WEIGHTS
    return load_file(str(f))


def load_config(folder: Path) -> dict:
    return json.loads((Path(folder) / CONFIG).read_text())


def load_state(folder: Path) -> Optional[dict]:
    f = Path(folder) / STATE
    return torch.load(f, weights_only=False) if f.exists() else None
