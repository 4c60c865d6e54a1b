"""Sampling a denoising diffusion GAN (Xiao et al. 2022, sec. 4): at each of the few large steps the generator maps
(x_t, z, t) to x0' and x_{t-1} is drawn from the process's own posterior q(x_{t-1} | x_t, x0')."""
from __future__ import annotations

from typing import Callable, Optional

import torch

from ..conditioning import with_latent
from ..utils import Generator, randn
from .base import check_times, noise_like
from .ddpm import ddpm_step


def latent_size(model) -> int:
    """The latent z's size of a DDGAN generator, with a one-line error for a model that reads none."""
    dim = getattr(model, "latent_dim", None)
    if not dim:
        raise ValueError("sampler 'ddgan': needs a denoising diffusion GAN's generator (a network with a latent z, "
                         "trained by objective ddgan); this model reads no latent")
    return int(dim)


@torch.no_grad()
def ddgan_sample(model, x_T: torch.Tensor, times: torch.Tensor, *, cond=None, generator: Generator = None,
                 callback: Optional[Callable] = None, progress: bool = False) -> torch.Tensor:
    """x_s ~ q(x_s | x_t, x0' = G(x_t, z, t)), z ~ N(0, I) drawn afresh per step and sample, over descending `times`
    (a DDGAN's T trained steps: schedule 'uniform' with steps = T)."""
    dim = latent_size(model)
    times = check_times(times)
    x = x_T
    for i in range(len(times) - 1):
        z = randn((x.shape[0], dim), generator, device=x.device, dtype=x.dtype)
        x, pred = ddpm_step(model, x, times[i], times[i + 1], noise_like(x, generator), variance="beta_tilde",
                            cond=with_latent(cond, z))
        if callback is not None:
            callback(i, times[i], x, pred)
    return x
