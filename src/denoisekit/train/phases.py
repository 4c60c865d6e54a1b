"""The phases of a training step: a loss's named per-example terms, and for a loss that trains several parts of a
model (a GAN's players) the updates it asks for, each with its part's optimizer."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from ..conditioning import Cond


@dataclass(frozen=True)
class Phase:
    """One update within a training step of a loss with several parts (a GAN's players): the loss's
    `terms(..., phase=name)['loss']` minimised by the optimizer of `part`, on the steps where step % every == 0
    (StyleGAN2's lazy regularisation is a phase, not a branch)."""
    name: str
    part: str
    every: int = 1


SINGLE = (Phase("loss", "model"),)  # a plain loss: one phase, one optimizer over the whole model


def loss_terms(loss_fn, model, x, cond, generators, phase: Optional[str] = None) -> dict:
    """A loss's named per-example terms: {'loss': what is minimised, other names: what is logged beside it}. A loss
    with `terms(model, x, cond, generators)` names its own (given `phase=` when it has phases); a plain callable's
    value is 'loss'."""
    if hasattr(loss_fn, "terms"):
        if phase is not None:
            return loss_fn.terms(model, x, cond, generators, phase=phase)
        return loss_fn.terms(model, x, cond, generators)
    return {"loss": loss_fn(model, x, cond, generators)}


class _LossModule(nn.Module):
    """model + loss as one module, so DistributedDataParallel sees the forward pass; the batch means of the terms."""

    def __init__(self, model, loss_fn):
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, x, cond, generators, phase: Optional[str] = None):
        return {k: v.mean() for k, v in loss_terms(self.loss_fn, self.model, x, cond, generators, phase).items()}


def _rows(cond, part: slice):
    """The conditioning of a slice of the batch: None, a Cond's rows, or a tensor's."""
    if cond is None:
        return None
    return cond.index(part) if isinstance(cond, Cond) else cond[part]


def backward_in_parts(module, x, cond, generators, phase: Optional[str], parts: int, world: int, device_type: str,
                      bf16: bool) -> tuple[torch.Tensor, dict]:
    """Gradients of the batch's mean loss, summed over `parts` micro-batches (gradient accumulation; DDP
    synchronises only the last); returns (the batch's mean loss, its mean terms), detached."""
    n, loss, terms = len(x), 0.0, {}
    for j in range(parts):
        part = slice(j * n // parts, (j + 1) * n // parts)
        sync = world == 1 or j == parts - 1
        with (contextlib.nullcontext() if sync else module.no_sync()), \
                torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
            out = module(x[part], _rows(cond, part), generators[part], phase)
            (out["loss"] / parts).backward()
        loss = loss + out["loss"].detach() / parts
        terms = {name: terms.get(name, 0.0) + v.detach() / parts for name, v in out.items()}
    return loss, terms
