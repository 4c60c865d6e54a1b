"""A checkpoint's measured samplers: `denoisekit eval CKPT --record` appends its score to the checkpoint's
sampler_scores.json, and `denoisekit sample` / `eval` with no sampler flags use the best one recorded there."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

from ..utils import atomic_save
from .entry import check_request

SCORES = "sampler_scores.json"
FALLBACK = {"sampler": "ddpm", "steps": 100, "schedule": None, "options": {}}  # before anything is recorded
# a consistency model (Song et al. 2023) is sampled by evaluating its f, in a few steps
CONSISTENCY_FALLBACK = {"sampler": "consistency", "steps": 2, "schedule": None, "options": {}}
METRICS = ("fd", "swd")  # lower is better: the Frechet distance of images, the sliced Wasserstein distance of vectors


def read_scores(folder) -> list:
    """The recorded scores of the checkpoint in `folder` (a list of entries), with a one-line error for a damaged
    file; [] when none are recorded."""
    path = Path(folder) / SCORES
    if not path.is_file():
        return []
    try:
        entries = json.loads(path.read_text())
        for e in entries:
            check_request(e["sampler"], e["schedule"], dict(e["options"]))
            if not (isinstance(e["steps"], int) and e["steps"] >= 1 and isinstance(e["score"], (int, float))
                    and math.isfinite(e["score"]) and e["metric"] in METRICS):
                raise ValueError(f"bad entry {e!r}"[:120])
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as err:
        text = f"an entry has no {err}" if isinstance(err, KeyError) else (str(err).splitlines()[0] if str(err)
                                                                             else type(err).__name__)
        raise ValueError(f"{path} is damaged ({text[:160]}); delete it, or name a sampler with --sampler") from None
    return entries


def fallback_for(folder) -> dict:
    """What the checkpoint in `folder` samples with before anything is recorded: a distilled student's recorded
    sampling, a DDGAN's T steps of sampler ddgan (an EBM's of sampler recovery), SSCS for a CLD model,
    CONSISTENCY_FALLBACK for a consistency model (its denoiser has consistency: true), else FALLBACK; read from its
    config, weights untouched."""
    from ..train.checkpoint import load_config
    if folder is None:
        return FALLBACK
    try:
        model = load_config(folder).get("model")
    except (ValueError, OSError):
        return FALLBACK  # the model opener says what is wrong with it, in its turn
    distilled = (load_config(folder).get("distill") or {}).get("sampling")
    if isinstance(distilled, dict) and {"sampler", "steps", "schedule", "options"} <= set(distilled):
        return distilled  # a distilled student samples as it was trained (a progressive one: ddim, trailing, N)
    if isinstance(model, dict) and model.get("class") in ("DDGAN", "RecoveryEBM"):  # its T trained steps
        gan = model["class"] == "DDGAN"
        T = (((model.get("generator") or {}) if gan else model).get("process") or {}).get("T")
        if isinstance(T, int) and T >= 1:
            return {"sampler": "ddgan" if gan else "recovery", "steps": T, "schedule": "uniform", "options": {}}
    if isinstance(model, dict) and model.get("class") == "CLDDenoiser":  # CLD's state (x, v): its own sampler
        return {**FALLBACK, "sampler": "sscs", "schedule": "uniform"}
    return CONSISTENCY_FALLBACK if isinstance(model, dict) and model.get("consistency") is True else FALLBACK


def best_recorded(folder) -> Optional[dict]:
    """The recorded entry with the lowest score in the first metric of METRICS any entry has (ties: fewer steps)."""
    entries = read_scores(folder)
    if not entries:
        return None
    metric = next(m for m in METRICS if any(e["metric"] == m for e in entries))
    return min((e for e in entries if e["metric"] == metric), key=lambda e: (e["score"], e["steps"]))


def record_score(folder, entry: dict) -> Path:
    """Add `entry` ({sampler, steps, schedule, options, n, seed, metric, score, ...}) to the checkpoint's scores, atomically;
    an entry with the same sampler, steps, schedule, options, n and seed replaces the earlier one."""
    same = ("sampler", "steps", "schedule", "options", "n", "seed")
    entries = [e for e in read_scores(folder) if any(e.get(k) != entry.get(k) for k in same)] + [entry]
    path = Path(folder) / SCORES
    atomic_save(path, lambda p: Path(p).write_text(json.dumps(entries, indent=2)))
    return path
