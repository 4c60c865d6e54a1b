"""Checkpoints: safetensors weights + JSON config + a state file, written to a temporary folder and renamed."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..utils import TMP_MARK

WEIGHTS, EMA_WEIGHTS, CONFIG, STATE = "model.safetensors", "ema.safetensors", "config.json", "state.pt"


def _tensors(weights) -> dict:
    """A module's state dict (or a dict of tensors) on the CPU, contiguous, as safetensors stores it."""
    items = weights.items() if isinstance(weights, dict) else weights.state_dict().items()
    return {k: v.detach().cpu().contiguous() for k, v in items}


def save_checkpoint(folder: Path, model, ema_model, config: dict, state: Optional[dict],
                    extra: Optional[dict] = None) -> Path:
    """Write a complete checkpoint folder atomically: nothing half-written is ever visible under `folder`. model and
    ema_model are modules or dicts of tensors; `extra` maps more safetensors file names to their tensors; no state
    (None) makes a checkpoint to sample from, not to resume."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}{TMP_MARK}{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(_tensors(model), str(tmp / WEIGHTS))
    if ema_model is not None:
        save_file(_tensors(ema_model), str(tmp / EMA_WEIGHTS))
    for name, tensors in (extra or {}).items():
        save_file(tensors, str(tmp / name))
    (tmp / CONFIG).write_text(json.dumps(config, indent=2))
    if state is not None:
        torch.save(state, tmp / STATE)
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
        os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, folder)
    latest = folder.parent / "latest"
    tmp_latest = folder.parent / f".latest{TMP_MARK}{os.getpid()}"
    tmp_latest.write_text(folder.name)
    os.replace(tmp_latest, latest)
    return folder


def find_checkpoint(path) -> Path:
    """A checkpoint folder from itself, a run folder, a checkpoints folder (the latest one) or a folder of stages."""
    path = Path(path)
    for candidate in (path, path / "checkpoints"):
        if (candidate / CONFIG).exists() and (candidate / WEIGHTS).exists():
            return candidate
        if (candidate / "latest").exists():
            return candidate / (candidate / "latest").read_text().strip()
    staged = sorted((p for p in (path / "stages").glob("*") if (p / "checkpoints" / "latest").exists()),
                    key=lambda p: p.name) if (path / "stages").is_dir() else []
    if staged:  # a run in stages (`denoisekit distill`): the last stage that has a checkpoint
        return find_checkpoint(staged[-1])
    raise FileNotFoundError(f"checkpoint: no checkpoint at {path} (expected a folder with {CONFIG} and {WEIGHTS}, "
                            f"or a run folder with checkpoints/latest)")


def checkpoint_candidates(run_dir) -> list[Path]:
    """A run's checkpoint folders, newest first: the one `latest` names, then the others by step (for fallback)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    folders = sorted((p for p in root.glob("step-*") if p.is_dir()), key=lambda p: p.name, reverse=True)
    latest = root / "latest"
    if latest.is_file():
        named = root / latest.read_text().strip()
        folders = [named] + [p for p in folders if p != named]
    return folders


def clean_interrupted_writes(root) -> list[str]:
    """Tidy a folder after a kill during a save: remove temporary folders and files, and put back a checkpoint that
    was being replaced when the kill came (`.NAME.old-PID` with no NAME). Returns what was done, for the log."""
    root, done = Path(root), []
    if not root.is_dir():
        return done
    for p in sorted(root.iterdir()):
        old = re.fullmatch(r"\.(.+)\.old-\d+", p.name)
        if old and not (root / old[1]).exists():
            os.replace(p, root / old[1])
            done.append(f"restored {old[1]}")
        elif old or (p.name.startswith(".") and TMP_MARK in p.name):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
            done.append(f"removed {p.name}")
    return done


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:200]


def load_weights(folder: Path, ema: bool = True, require_ema: bool = False) -> dict:
    """The EMA weights if present and asked for, else the raw weights (with `require_ema`, a missing EMA file is an
    error: resuming must not take raw weights as the EMA)."""
    folder = Path(folder)
    has_ema = (folder / EMA_WEIGHTS).exists()
    if ema and require_ema and not has_ema:
        raise FileNotFoundError(f"checkpoint: {folder} has no {EMA_WEIGHTS}")
    return load_tensors(folder, EMA_WEIGHTS if ema and has_ema else WEIGHTS)


def load_tensors(folder: Path, name: str) -> dict:
    """The tensors of safetensors file `name` in a checkpoint folder, or a one-line error."""
    f = Path(folder) / name
    if not f.exists():
        raise FileNotFoundError(f"checkpoint: {Path(folder)} has no {name}")
    try:
        return load_file(str(f))
    except Exception as e:
        raise ValueError(f"checkpoint: {f} is damaged or not a safetensors file ({_first_line(e)})") from None


def load_config(folder: Path) -> dict:
    """The checkpoint's config.json, which must be a JSON mapping."""
    f = Path(folder) / CONFIG
    if not f.exists():
        raise FileNotFoundError(f"checkpoint: {Path(folder)} has no {CONFIG}")
    try:
        config = json.loads(f.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"checkpoint: {f} is not valid JSON ({_first_line(e)})") from None
    if not isinstance(config, dict):
        raise ValueError(f"checkpoint: {f} should hold a JSON mapping, got {type(config).__name__}")
    return config


def load_matching(module: torch.nn.Module, weights: dict, source, sharded: bool = False) -> None:
    """module.load_state_dict(weights), with a one-line error naming what does not match the network (a sharded
    module keeps its shard of each whole tensor)."""
    own = module.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    shapes = sorted(k for k in set(own) & set(weights) if tuple(own[k].shape) != tuple(weights[k].shape))
    if missing or unexpected or shapes:
        parts = [f"{label} {names[:3]}{' ...' if len(names) > 3 else ''}" for label, names in
                 (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)) if names]
        raise ValueError(f"checkpoint: the weights in {source} do not match the network its {CONFIG} describes "
                         f"({'; '.join(parts)})")
    if sharded:
        from .sharding import load_full_weights
        load_full_weights(module, weights)
    else:
        module.load_state_dict(weights)


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
    """numpy's array constructors: data only, allowed so state files written before numpy_rng_to_plain still load;
    `_reconstruct` under both the path numpy 1 pickles (numpy.core) and numpy 2's (numpy._core)."""
    reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]
    return [(reconstruct, "numpy.core.multiarray._reconstruct"), (reconstruct, "numpy._core.multiarray._reconstruct"),
            np.ndarray, np.dtype, type(np.dtype(np.uint32))]


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
        raise ValueError(f"checkpoint: {f} is not a plain training-state file (only tensors and plain values are "
                         f"read, nothing is unpickled): {_first_line(e)[:160]}") from None
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint: {f} does not hold a training state (a mapping), got {type(state).__name__}")
    return state
