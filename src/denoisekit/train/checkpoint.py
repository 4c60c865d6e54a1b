"""Checkpoints: safetensors weights + JSON config + a state file, written to a temporary folder and renamed."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Optional

import numpy as np
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


def numpy_rng_to_plain(state: tuple) -> dict:
    """np.random.get_state() as tensors and plain values, which torch.load(weights_only=True) reads."""
    name, keys, pos, has_gauss, cached = state
    return {"name": name, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def numpy_rng_from_plain(state) -> tuple:
    """The inverse of numpy_rng_to_plain (a tuple from an older checkpoint passes through)."""
    if isinstance(state, dict):
        return (state["name"], state["keys"].numpy().astype(np.uint32), state["pos"], state["has_gauss"],
                state["cached_gaussian"])
    return state


def _numpy_array_globals() -> list:
    """numpy's array constructors: data only, allowed so state files written before numpy_rng_to_plain still load."""
    import numpy.core.multiarray as multiarray
    return [multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def load_state(folder: Path) -> Optional[dict]:
    """The training state (optimizer, EMA count, RNGs, step), read without unpickling arbitrary objects: a checkpoint
    handed to you cannot run code (torch.load with weights_only=True; only tensors and plain values)."""
    f = Path(folder) / STATE
    if not f.exists():
        return None
    try:
        with torch.serialization.safe_globals(_numpy_array_globals()):
            state = torch.load(f, weights_only=True, map_location="cpu")
    except Exception as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"checkpoint: {f} is not a plain training-state file (only tensors and plain values are "
                         f"read, nothing is unpickled): {reason[:160]}") from None
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint: {f} does not hold a training state (a mapping), got {type(state).__name__}")
    return state
