"""Ancestral DDPM sampling (Ho et al. 2020, Algorithm 2) on any descending sequence of times."""
from __future__ import annotations

from typing import Callable, Literal, Optional

import torch
from tqdm.auto import tqdm

from ..utils import Generator, append_dims, randn

Variance = Literal["beta_tilde", "beta"]


def ddpm_step(denoiser, x: torch.Tensor, t, s, noise: Optional[torch.Tensor], *,
              variance: Variance = "beta_tilde", cond=None):
    """x_s ~ p(x_s | x_t) = N(mu-tilde(x_t, x0_hat), sigma^2): sigma^2 = beta-tilde (posterior) or beta (transition)."""
    if variance not in ("beta_tilde", "beta"):
        raise ValueError(f"variance: expected 'beta_tilde' or 'beta', got {variance!r}")
    process = denoiser.process
    b = x.shape[0]
    t = torch.as_tensor(t, dtype=torch.float64, device=x.device).expand(b)
    s = torch.as_tensor(s, dtype=torch.float64, device=x.device).expand(b)
    pred = denoiser(x, t, cond)
    mean, var = process.posterior(x, pred.x0, t, s)
    if variance == "beta":
        var = process.transition_variance(t, s)
    var = torch.where(process.sigma(s) > 0, var, torch.zeros_like(var))  # the last step adds no noise
    if noise is None:
        return mean, pred
    return mean + append_dims(var.sqrt(), x.ndim).to(x.dtype) * noise, pred


@torch.no_grad()
def ddpm_sample(denoiser, x_T: torch.Tensor, times: torch.Tensor, *, variance: Variance = "beta_tilde",
                cond=None, generator: Generator = None, callback: Optional[Callable] = None,
                progress: bool = False) -> torch.Tensor:
    """Run ancestral steps t_i -> t_{i+1} over `times` (descending, ending at the data); returns x at times[-1].

    `generator` is one torch.Generator or one per sample (then each sample is independent of the batch size);
    `callback(i, t, x, pred)` is called after each step.
    """
    times = torch.as_tensor(times, dtype=torch.float64)
    if times.ndim != 1 or len(times) < 2 or not bool((times[1:] < times[:-1]).all()):
        raise ValueError("times: expected a strictly descending 1-D sequence of at least 2 times")
    x = x_T
    for i in tqdm(range(len(times) - 1), disable=not progress, desc="sampling", leave=False):
        t, s = times[i], times[i + 1]
        noise = randn(x.shape, generator, device=x.device, dtype=x.dtype) if float(s) > times[-1] else None
        x, pred = ddpm_step(denoiser, x, t, s, noise, variance=variance, cond=cond)
        if callback is not None:
            callback(i, t, x, pred)
    return x
