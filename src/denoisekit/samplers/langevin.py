"""Langevin dynamics with a learned score, and annealed Langevin dynamics over decreasing noise levels (Song & Ermon
2019, sec. 2.2 and Alg. 1): x <- x + alpha/2 s(x) + sqrt(alpha) z, with the score s = -eps / sigma of the model."""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from ..config import require
from ..utils import Generator
from .base import Grid, check_times, noise_like, steps_of
from .sde import score_of


def check_langevin(process, times, *, eps: float = 2e-5, n_steps: int = 100, denoise: bool = True, **_) -> None:
    """The options of `ald_sample` / `langevin_sample` for these times, before any work: a step that would diverge."""
    require(isinstance(eps, (int, float)) and not isinstance(eps, bool) and eps > 0, "eps", "a positive step size",
            eps)
    require(isinstance(n_steps, int) and not isinstance(n_steps, bool) and n_steps >= 1, "n_steps",
            "a positive integer number of Langevin steps per noise level", n_steps)
    require(isinstance(denoise, bool), "denoise", "true or false", denoise)
    sigma_L = float(process.sigma(check_times(times)[-2]))
    if eps > 2 * sigma_L**2:  # on N(0, sigma^2 I) the chain contracts only for alpha < 4 sigma^2
        raise ValueError(f"eps: the Langevin step at the smallest level, {eps:g}, exceeds 2 sigma_L^2 = "
                         f"{2 * sigma_L**2:.3g} (sigma_L = {sigma_L:.3g}), where the chain diverges; use eps <= "
                         f"{0.1 * sigma_L**2:.3g} or times whose smallest noise level is larger")


@torch.no_grad()
def ald_sample(denoiser, x_T: torch.Tensor, times: torch.Tensor, *, eps: float = 2e-5, n_steps: int = 100,
               denoise: bool = True, cond=None, generator: Generator = None, callback: Optional[Callable] = None,
               progress: bool = False):
    """Annealed Langevin dynamics (Song & Ermon 2019, Alg. 1): at each network time t_i (sigma_1 > ... > sigma_L: the
    rungs of an NCSN ladder under the 'uniform' schedule), `n_steps` Langevin steps of size alpha_i = eps sigma_i^2 /
    sigma_L^2. With `denoise`, then one step to the data x = D(x, t_L) = x + sigma_L^2 s (Tweedie; Jolicoeur-Martineau
    et al. 2021, NCSNv2's final denoising); without, the sample at sigma_L. The data time in `times` is not a level.
    NFE = n_steps per level (+1 to denoise). callback(i, t_i, x, pred) after each level."""
    check_langevin(denoiser.process, times, eps=eps, n_steps=n_steps, denoise=denoise)
    grid = Grid(denoiser, times, x_T, cond)
    sigma_L = grid.levels[-2] * grid.alphas[-2]
    x = x_T
    for i in steps_of(grid, progress, "annealed Langevin"):
        alpha = eps * (grid.levels[i] * grid.alphas[i] / sigma_L) ** 2
        for _ in range(n_steps):
            pred = grid.denoise_x(x, i)
            x = x + (alpha / 2) * score_of(pred, grid._sigma[i])
            x.add_(noise_like(x, generator), alpha=math.sqrt(alpha))
        if grid.levels[i + 1] == 0 and denoise:
            pred = grid.denoise_x(x, i)
            x = pred.x0
        if callback is not None:
            callback(i, grid.t[i], x, pred)
    return x


@torch.no_grad()
def langevin_sample(denoiser, x_T: torch.Tensor, times: torch.Tensor, *, eps: float = 2e-5, n_steps: int = 1000,
                    denoise: bool = True, cond=None, generator: Generator = None, callback: Optional[Callable] = None,
                    progress: bool = False):
    """Langevin dynamics at one noise level (Song & Ermon 2019, eq. 4), the smallest network time of `times`, with
    step eps: `ald_sample` without annealing. It shows what annealing fixes: from the prior, the chain is slow to reach
    the data's low-density regions and to weigh separated modes right (sec. 3.2)."""
    times = check_times(times)
    return ald_sample(denoiser, x_T, times[-2:], eps=eps, n_steps=n_steps, denoise=denoise, cond=cond,
                      generator=generator, callback=callback, progress=progress)


ald_sample.check = langevin_sample.check = check_langevin  # see samplers.check_request
