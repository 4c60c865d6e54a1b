"""Ancestral DDPM sampling (Ho et al. 2020, Algorithm 2) on any descending sequence of times."""
from __future__ import annotations

from typing import Callable, Optional

import torch

from ..utils import Generator, append_dims
from ..vlb import VARIANCES, Variance, interpolate_log_variance, log_variance_ends, model_log_variance, resolve_variance
from .base import Grid, check_times, noise_like, steps_of



def ddpm_coefficients(process, t: torch.Tensor, s: torch.Tensor, variance: Variance = "beta_tilde"):
    """(c_xt, c_x0, std): x_s = c_xt x_t + c_x0 x0_hat + std z, with std^2 = beta-tilde (posterior) or beta (transition).

    The last step (sigma(s) = 0) adds no noise. For 'learned' the std is the model's (`learned_std`); the one returned
    is beta-tilde's, zero exactly where no noise is added.
    """
    if variance not in VARIANCES:
        raise ValueError(f"variance: expected 'beta_tilde', 'beta' or 'learned', got {variance!r}")
    c_xt, c_x0, var = process.posterior_coefficients(t, s)
    if variance == "beta":
        var = process.transition_variance(t, s)
    return c_xt, c_x0, torch.where(process.sigma(s) > 0, var, torch.zeros_like(var)).clamp(min=0).sqrt()


def learned_std(process, t, s, v: torch.Tensor) -> torch.Tensor:
    """exp(log Sigma / 2) with log Sigma = v log beta + (1 - v) log beta-tilde between t and s (Nichol & Dhariwal 2021,
    eq. 15), per element of v."""
    return (0.5 * model_log_variance(process, t, s, "learned", v)).exp().to(v.dtype)


def ddpm_step(denoiser, x: torch.Tensor, t, s, noise: Optional[torch.Tensor], *,
              variance: Optional[Variance] = None, cond=None):
    """x_s ~ p(x_s | x_t) = N(mu-tilde(x_t, x0_hat), sigma^2): one step of Algorithm 2, from t to s < t."""
    b = x.shape[0]
    variance = resolve_variance(denoiser, variance)
    t = torch.as_tensor(t, dtype=torch.float64, device=x.device).expand(b)
    s = torch.as_tensor(s, dtype=torch.float64, device=x.device).expand(b)
    pred = denoiser(x, t, cond)
    c_xt, c_x0, std = (append_dims(c, x.ndim).to(x.dtype) for c in ddpm_coefficients(denoiser.process, t, s, variance))
    if variance == "learned":
        std = torch.where(std > 0, learned_std(denoiser.process, t, s, pred.v), std)
    mean = c_xt * x + c_x0 * pred.x0
    shift = getattr(denoiser, "mean_shift", None)
    if shift is not None:
        mean = mean + shift(x, t, cond, std**2)
    return (mean if noise is None else mean + std * noise), pred


@torch.no_grad()
def ddpm_sample(denoiser, x_T: torch.Tensor, times: torch.Tensor, *, variance: Optional[Variance] = None,
                cond=None, generator: Generator = None, callback: Optional[Callable] = None,
                progress: bool = False) -> torch.Tensor:
    """Ancestral sampling (Ho et al. 2020, Alg. 2) over descending `times`; on a sub-sequence this is respacing.

    `variance`: sigma^2 = beta-tilde (the posterior's), beta (the transition's; DDIM's sigma-hat on a sub-sequence) or
    the model's learned interpolation of the two (Nichol & Dhariwal 2021, eq. 15), taken between the times visited;
    by default 'learned' for a model with learned variance, else 'beta_tilde'.
    `generator` is one torch.Generator or one per sample (then each sample is independent of the batch size);
    `callback(i, t, x, pred)` is called after each step.
    """
    times = check_times(times)
    variance = resolve_variance(denoiser, variance)
    c_xt, c_x0, std = (c.tolist() for c in ddpm_coefficients(denoiser.process, times[:-1], times[1:], variance))
    if variance == "learned":  # the ends of each step's learned interpolation, once, before the loop
        log_beta, log_tilde = (c.tolist() for c in log_variance_ends(denoiser.process, times[:-1], times[1:])[:2])
    grid = Grid(denoiser, times, x_T, cond)
    shift = getattr(denoiser, "mean_shift", None)  # classifier guidance's mean form: mu + s Sigma grad log p(y|x_t)
    x = x_T
    for i in steps_of(grid, progress):
        pred = grid.denoise_x(x, i)
        sd = (0.5 * interpolate_log_variance(pred.v, log_beta[i], log_tilde[i])).exp() if variance == "learned" \
            else std[i]
        delta = shift(x, grid._t[i], cond, sd ** 2) if shift is not None and std[i] > 0 else None
        x = x * c_xt[i]
        x.add_(pred.x0, alpha=c_x0[i])
        if delta is not None:
            x.add_(delta)
        if std[i] > 0 and variance == "learned":
            x.addcmul_(noise_like(x, generator), sd)
        elif std[i] > 0:
            x.add_(noise_like(x, generator), alpha=sd)
        if callback is not None:
            callback(i, grid.t[i], x, pred)
    return x
