"""Multistep consistency sampling (Song et al. 2023, Alg. 1): x0 <- f(x, s_0); then at each next level s_k,
x~ = x0 + sqrt(s_k^2 - s_min^2) z and x0 <- f(x~, s_k)."""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Union

import torch

from ..utils import Generator
from .base import Grid, noise_like, report, steps_of


def with_levels(process, times, levels: Union[None, float, Sequence[float]]) -> torch.Tensor:
    """`times` with the network times after the first replaced by those of the noise levels sigma/alpha `levels`
    (descending, one per evaluation after the first: the intermediate levels Song et al. 2023 tune for multistep
    sampling); `times` unchanged when `levels` is None."""
    times = torch.as_tensor(times, dtype=torch.float64)
    if levels is None:
        return times
    levels = list(levels) if isinstance(levels, (list, tuple)) else [levels]
    want = len(times) - 2
    if len(levels) != want or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in levels):
        raise ValueError(f"levels: expected {want} noise level(s) sigma/alpha for {want + 1} steps (one per evaluation "
                         f"after the first), got {levels!r}")
    top, bottom = (float(process.noise_level(times[i])) for i in (0, -1))
    chain = [top, *levels, bottom]
    if not all(a > b for a, b in zip(chain, chain[1:])):
        raise ValueError(f"levels: expected descending noise levels between {bottom:.4g} and {top:.4g} (those of the "
                         f"first and the last time), got {levels!r}")
    inner = process.t_from_noise_level(torch.tensor(levels, dtype=torch.float64))
    return torch.cat([times[:1], inner, times[-1:]])


@torch.no_grad()
def consistency_sample(denoiser, x_T: torch.Tensor, times: torch.Tensor, *, levels=None, cond=None,
                       generator: Generator = None, callback: Optional[Callable] = None,
                       progress: bool = False) -> torch.Tensor:
    """Song et al. 2023, Algorithm 1: one evaluation of the consistency function per network time of `times` (the
    last entry, the data, is where the result lands), or at the noise levels `levels` after the first (`with_levels`);
    the level s_min of f's boundary is the denoiser's `sigma_min` (0 for a model without the consistency
    parametrization, which then samples as DDPM with x0 re-noised)."""
    grid = Grid(denoiser, with_levels(denoiser.process, times, levels), x_T, cond)
    s_min = getattr(denoiser, "sigma_min", 0.0)
    x = x_T / grid.alphas[0]
    x0 = x
    for i in steps_of(grid, progress):
        if i > 0:
            x = x0 + noise_like(x0, generator) * math.sqrt(max(grid.levels[i] ** 2 - s_min**2, 0.0))
        pred = grid.denoise(x, i)
        x0 = pred.x0
        report(callback, grid, i, x0 * grid.alphas[i + 1], pred)
    return x0 * grid.alphas[-1]


@torch.no_grad()
def consistency_inpaint(denoiser, x_known: torch.Tensor, mask: torch.Tensor, times: torch.Tensor, *, cond=None,
                        generator: Generator = None, progress: bool = False) -> torch.Tensor:
    """Song et al. 2023, Algorithm 4 with A = I (inpainting): x~ = y + s_0 z with the unknown part (mask 0) of y zeroed,
    x0 <- f(x~, s_0), then at each next level x~ = x0 + sqrt(s_k^2 - s_min^2) z and x0 <- f(x~, s_k), the known part
    (mask 1) of x0 set back to y after each evaluation. One evaluation per network time of `times`."""
    mask = torch.as_tensor(mask, dtype=x_known.dtype, device=x_known.device).expand_as(x_known)
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("mask: expected 0 (to fill) and 1 (known) only")
    grid = Grid(denoiser, times, x_known, cond)
    s_min = getattr(denoiser, "sigma_min", 0.0)
    x0 = mask * x_known
    for i in steps_of(grid, progress):
        spread = grid.levels[i] if i == 0 else math.sqrt(max(grid.levels[i] ** 2 - s_min**2, 0.0))
        x0 = mask * x_known + (1 - mask) * grid.denoise(x0 + noise_like(x0, generator) * spread, i).x0
    return x0
