"""Adaptive Runge-Kutta (Dormand-Prince 5(4), through torchdiffeq) on the probability-flow ODE."""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from ..utils import Generator
from .base import Grid


@torch.no_grad()
def rk45_sample(denoiser, x_T, times, *, rtol: float = 1e-4, atol: float = 1e-4, cond=None,
                generator: Generator = None, callback: Optional[Callable] = None, progress: bool = False,
                stats: Optional[dict] = None):
    """The probability-flow ODE (Song et al. 2021, eq. 13) solved by dopri5 to (rtol, atol) in u = log s, where it
    reads dx~/du = x~ - D(x~, e^u) (Karras et al. 2022, eq. 4 with ds = s du). Only the first and last times of
    `times` matter: it integrates from the first to the smallest positive noise level, then, if the times end at
    the data, takes x~ = D there. The network evaluations it used go to `stats['nfe']` when a dict is given.
    """
    try:
        from torchdiffeq import odeint
    except ImportError as e:  # a dependency of denoisekit; only a stripped environment lacks it
        raise ValueError("sampler 'rk45': needs the torchdiffeq package (pip install torchdiffeq)") from e
    for name, v in (("rtol", rtol), ("atol", atol)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ValueError(f"{name}: expected a positive number, got {v!r}")
    grid = Grid(denoiser, times, x_T, cond)
    positive = [s for s in grid.levels if s > 0]
    if len(positive) == 1:  # one step: integrate down to the smallest trained time
        positive.append(float(grid.process.noise_level(torch.tensor(grid.process.t_eps, dtype=torch.float64))))
    u0, u1 = math.log(positive[0]), math.log(positive[-1])
    process, nfe = grid.process, [0]

    def f(u, x):
        nfe[0] += 1
        return x - grid.denoise_at_time(x, process.t_from_noise_level(u.double().exp())).x0

    x = x_T / grid.alphas[0]
    u = torch.tensor([u0, u1], dtype=torch.float64 if x.dtype == torch.float64 else torch.float32, device=x.device)
    if u0 != u1:  # (starting at the smallest trained level, there is nothing to integrate)
        x = odeint(f, x, u, rtol=rtol, atol=atol, method="dopri5")[-1]
    pred = None
    if grid.levels[-1] == 0:
        pred = grid.denoise(x, grid.n - 1) if grid.levels[-2] == positive[-1] else grid.denoise_at_level(x, positive[-1])
        nfe[0] += 1
        x = pred.x0
    if stats is not None:
        stats["nfe"] = nfe[0]
    if callback is not None:
        callback(grid.n - 1, grid.t[-2], x * grid.alphas[-1], pred)
    return x * grid.alphas[-1]
