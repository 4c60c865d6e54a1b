"""Reflow's data (Liu et al. 2023, sec. 2.3): the pairs (z, x) a flow-matching teacher's deterministic ODE makes, drawn
once into the distillation's folder (safetensors, with what made them) and reused on resume; a data set whose examples
are the teacher's samples x with their noise z in the conditioning's noise slot, for `ReflowLoss`."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..conditioning import Cond
from ..config import require
from ..data import ArrayDataset
from ..samplers import balanced_labels
from ..samplers.reflow import ODE_SAMPLERS, reflow_pairs
from ..utils import atomic_save

PAIRS = "pairs.safetensors"  # in the distillation's folder, beside stages/
PAIR_DEFAULTS = {"n": 5000, "sampler": "dpmpp_2m", "steps": 20, "schedule": None, "seed": 0}


def check_pairs(pairs) -> dict:
    """The pairs section with its defaults: how many couplings, drawn by which deterministic solver, from which seed."""
    require(isinstance(pairs, dict) and set(pairs) <= set(PAIR_DEFAULTS), "pairs",
            f"a mapping of {', '.join(PAIR_DEFAULTS)}", pairs)
    spec = {**PAIR_DEFAULTS, **pairs}
    require(isinstance(spec["n"], int) and not isinstance(spec["n"], bool) and spec["n"] >= 1, "pairs.n",
            "a positive number of couplings", spec["n"])
    require(spec["sampler"] in ODE_SAMPLERS, "pairs.sampler", f"a deterministic ODE solver ({', '.join(ODE_SAMPLERS)})",
            spec["sampler"])
    require(isinstance(spec["steps"], int) and not isinstance(spec["steps"], bool) and spec["steps"] >= 1,
            "pairs.steps", "a positive number of solver steps", spec["steps"])
    require(spec["schedule"] is None or isinstance(spec["schedule"], str), "pairs.schedule", "a schedule name or null",
            spec["schedule"])
    require(isinstance(spec["seed"], int) and not isinstance(spec["seed"], bool) and spec["seed"] >= 0, "pairs.seed",
            "an integer >= 0", spec["seed"])
    return spec


@dataclass
class PairedData(ArrayDataset):
    """The teacher's samples x with their prior draws z (and labels): each example's conditioning carries its z in
    Cond.noise, which `ReflowLoss` reads as the example's noise."""
    noise: Optional[torch.Tensor] = None

    def conditioning(self, idx) -> Cond:
        return Cond(label=None if self.y is None else self.y[idx], noise=self.noise[idx])


def _identity(teacher_weights: str, spec: dict) -> str:
    return json.dumps({"teacher": teacher_weights, **spec}, sort_keys=True)


def teacher_pairs(model, ds: ArrayDataset, spec: dict, out: Path, teacher_weights: str, guided=None,
                  progress: bool = True) -> PairedData:
    """The pairs in out/PAIRS when they were drawn from this teacher with this spec, else drawn now (pair i from
    (seed, i); a class-conditional teacher's labels 0, 1, ..., K-1, 0, ...) and written atomically."""
    path, identity = Path(out) / PAIRS, _identity(teacher_weights, spec)
    if path.is_file():
        try:
            with safe_open(str(path), framework="pt") as f:
                same = (f.metadata() or {}).get("identity") == identity
                tensors = {k: f.get_tensor(k) for k in f.keys()} if same else None
        except Exception as e:  # a damaged file is drawn again, never trusted
            print(f"reflow: {path} cannot be read ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                  f"drawing the pairs again")
            tensors = None
        if tensors is not None:
            print(f"reflow: {spec['n']} pairs from {path}")
            return PairedData(tensors["x"], tensors.get("y"), ds.num_classes, f"{ds.name} (reflow pairs)",
                              noise=tensors["z"])
    denoiser = guided if guided is not None else model.denoiser
    device = next(model.denoiser.parameters()).device
    labels = balanced_labels(spec["n"], model.num_classes, device)
    print(f"reflow: drawing {spec['n']} pairs with {spec['sampler']}, {spec['steps']} steps")
    z, x = reflow_pairs(denoiser, spec["n"], model.shape, seed=spec["seed"], sampler=spec["sampler"],
                        steps=spec["steps"], schedule=spec["schedule"], cond=labels, progress=progress)
    tensors = {"z": z.cpu().contiguous(), "x": x.cpu().float().contiguous()}
    if labels is not None:
        tensors["y"] = labels.cpu()
    Path(out).mkdir(parents=True, exist_ok=True)
    atomic_save(path, lambda p: save_file(tensors, str(p), metadata={"identity": identity}))
    return PairedData(tensors["x"], tensors.get("y"), ds.num_classes, f"{ds.name} (reflow pairs)", noise=tensors["z"])
