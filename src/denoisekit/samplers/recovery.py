"""Sampling a diffusion-recovery-likelihood EBM (Gao et al. 2021, Alg. 2): x_{T-1} from the prior, then at each level
x_{t-1} ~ p(x_{t-1} | x_t) by the model's short-run Langevin chain, down to the data."""
from __future__ import annotations

from typing import Callable, Optional

import torch

from ..objectives.recovery import LangevinChain, recover
from ..utils import Generator
from .base import check_times


def energy_chain(model) -> LangevinChain:
    """The Langevin chain of a recovery-likelihood EBM, with a one-line error for any other model."""
    chain = getattr(model, "chain", None)
    if not isinstance(chain, LangevinChain):
        raise ValueError("sampler 'recovery': needs an energy model trained by objective recovery (Gao et al. 2021); "
                         "this model is a denoiser, so use its own samplers")
    return chain


@torch.no_grad()
def recovery_sample(model, x_T: torch.Tensor, times: torch.Tensor, *, cond=None, generator: Generator = None,
                    callback: Optional[Callable] = None, progress: bool = False, langevin_steps: Optional[int] = None,
                    noise_scale: float = 1.0) -> torch.Tensor:
    """The levels t = T-1, ..., 0 of `times` (schedule 'uniform' with steps = T: every trained level, in order), each
    a chain of `langevin_steps` (default: as trained) with its noise scaled by `noise_scale` (the paper samples
    with 0.99 at test time)."""
    chain = energy_chain(model)
    check_recovery(model.process, times, langevin_steps, noise_scale)
    if langevin_steps is not None:
        chain = LangevinChain(int(langevin_steps), chain.b)
    times = check_times(times)
    for i in range(len(times) - 1):
        x_T = recover(model, model.process, x_T, times[i], chain, cond=cond, generator=generator,
                      noise_scale=noise_scale)
        if callback is not None:
            callback(i, times[i], x_T, None)
    return x_T


def check_recovery(process, times: torch.Tensor, langevin_steps: Optional[int] = None,
                   noise_scale: float = 1.0) -> None:
    """Before any work: the times are the trained levels in order (a chain learns one level's step, not a jump over
    several), the options in range."""
    if process.grid_step == 0 or not hasattr(process, "betas"):
        energy_chain(None)  # only a recovery-likelihood EBM (of a discrete process) samples this way
    times = torch.as_tensor(times, dtype=torch.float64)
    T = int(round(process.t_max)) + 1
    want = torch.arange(T - 1, -2, -1, dtype=torch.float64)
    if len(times) != len(want) or not bool((times == want).all()):
        raise ValueError(f"steps: a recovery-likelihood EBM runs each of its {T} trained levels in turn; use steps "
                         f"{T} with schedule uniform")
    if langevin_steps is not None and (not isinstance(langevin_steps, int) or isinstance(langevin_steps, bool)
                                       or langevin_steps < 1):
        raise ValueError(f"langevin_steps: expected a positive integer, got {langevin_steps!r}")
    if not (isinstance(noise_scale, (int, float)) and 0 <= noise_scale <= 2):
        raise ValueError(f"noise_scale: expected a number in [0, 2] (1: the trained chain), got {noise_scale!r}")


recovery_sample.check = check_recovery
