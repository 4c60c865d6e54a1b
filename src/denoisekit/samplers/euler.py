"""First- and second-order solvers in the noise level s = sigma/alpha: Euler, Heun with EDM's churn, Euler-Maruyama."""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from ..utils import Generator
from .base import Grid, noise_like, report, step_coefficients, steps_of


def churn_gammas(levels: list[float], s_churn: float, s_tmin: float, s_tmax: float) -> list[float]:
    """Karras et al. 2022, Alg. 2 line 4: gamma_i = min(S_churn / N, sqrt(2) - 1) for s_i in [S_tmin, S_tmax]."""
    for name, v in (("s_churn", s_churn), ("s_tmin", s_tmin), ("s_tmax", s_tmax)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ValueError(f"{name}: expected a non-negative number, got {v!r}")
    n = len(levels) - 1
    g = min(s_churn / n, math.sqrt(2) - 1)
    return [g if s_tmin <= s <= s_tmax and s_churn > 0 else 0.0 for s in levels[:-1]]


def _churn(grid: Grid, x: torch.Tensor, i: int, gamma: float, s_noise: float, generator):
    """Alg. 2 lines 5-7: raise the noise level to s_hat = s_i (1 + gamma) with fresh noise; D at (x_hat, s_hat)."""
    s = grid.levels[i]
    if gamma == 0:
        return x, s, grid.denoise(x, i)
    s_hat = s * (1 + gamma)
    x = x + noise_like(x, generator) * (s_noise * math.sqrt(s_hat**2 - s**2))
    return x, s_hat, grid.denoise_at_level(x, s_hat)


@torch.no_grad()
def euler_sample(denoiser, x_T: torch.Tensor, times: torch.Tensor, *, s_churn: float = 0.0, s_tmin: float = 0.0,
                 s_tmax: float = math.inf, s_noise: float = 1.0, cond=None, generator: Generator = None,
                 callback: Optional[Callable] = None, progress: bool = False) -> torch.Tensor:
    """Euler's method on dx~/ds = (x~ - D(x~, s)) / s (Karras et al. 2022, eq. 4), with optional churn (Alg. 2)."""
    grid = Grid(denoiser, times, x_T, cond)
    gammas = churn_gammas(grid.levels, s_churn, s_tmin, s_tmax)
    x = x_T / grid.alphas[0]
    for i in steps_of(grid, progress):
        x, s_hat, pred = _churn(grid, x, i, gammas[i], s_noise, generator)
        x = torch.add(x, pred.eps, alpha=grid.levels[i + 1] - s_hat)  # d = (x~ - D)/s = eps
        report(callback, grid, i, x, pred)
    return x * grid.alphas[-1]


@torch.no_grad()
def heun_sample(denoiser, x_T: torch.Tensor, times: torch.Tensor, *, s_churn: float = 0.0, s_tmin: float = 0.0,
                s_tmax: float = math.inf, s_noise: float = 1.0, cond=None, generator: Generator = None,
                callback: Optional[Callable] = None, progress: bool = False) -> torch.Tensor:
    """Karras et al. 2022, Algorithm 2 (NVlabs/edm `edm_sampler`): Heun's 2nd-order method with stochastic churn.

    2N - 1 network evaluations for N steps: the last step, to s = 0, is an Euler step.
    """
    grid = Grid(denoiser, times, x_T, cond)
    gammas = churn_gammas(grid.levels, s_churn, s_tmin, s_tmax)
    x_next = x_T / grid.alphas[0]
    for i in steps_of(grid, progress):
        x_hat, t_hat, pred = _churn(grid, x_next, i, gammas[i], s_noise, generator)
        t_next = grid.levels[i + 1]
        d_cur = (x_hat - pred.x0) / t_hat
        x_next = x_hat + (t_next - t_hat) * d_cur
        if t_next > 0:
            d_prime = (x_next - grid.denoise(x_next, i + 1).x0) / t_next
            x_next = x_hat + (t_next - t_hat) * (0.5 * d_cur + 0.5 * d_prime)
        report(callback, grid, i, x_next, pred)
    return x_next * grid.alphas[-1]


def heun_step(denoiser, x: torch.Tensor, t, s, *, cond=None):
    """One Heun step of the probability-flow ODE dx~/ds = (x~ - D(x~, s)) / s from t to s < t per example (Karras et
    al. 2022, Alg. 1; consistency distillation's teacher), differentiable; an Euler step where s is the data (level 0).
    Returns (x_s, the prediction at t)."""
    t, s, a_t, a_s, lvl_t, lvl_s = step_coefficients(denoiser.process, x, t, s)
    pred = denoiser(x, t, cond)
    x_tilde = x / a_t
    x_euler = x_tilde + (lvl_s - lvl_t) * pred.eps  # d = (x~ - D) / s = eps
    second = lvl_s.reshape(-1) > 0
    s_eval = torch.where(second, s, t)  # where s is the data the second evaluation is unused: keep it finite
    a_eval = torch.where(second.reshape(a_s.shape), a_s, a_t)
    eps_next = denoiser(x_euler * a_eval, s_eval, cond).eps
    x_heun = x_tilde + (lvl_s - lvl_t) * 0.5 * (pred.eps + eps_next)
    return a_s * torch.where(second.reshape(a_s.shape), x_heun, x_euler), pred


@torch.no_grad()
def euler_maruyama_sample(denoiser, x_T: torch.Tensor, times: torch.Tensor, *, cond=None,
                          generator: Generator = None, callback: Optional[Callable] = None,
                          progress: bool = False) -> torch.Tensor:
    """Euler-Maruyama on the reverse SDE (Song et al. 2021, eq. 6) in x~: dx~ = 2 (x~ - D)/s ds + sqrt(2 s |ds|) z.

    In x~ = x/alpha every process is variance-exploding with g^2 = d(s^2)/ds; the last step, to s = 0, is the
    denoising step x~ = D(x~, s) (Song et al. 2021, App. D's noise removal).
    """
    grid = Grid(denoiser, times, x_T, cond)
    x = x_T / grid.alphas[0]
    for i in steps_of(grid, progress):
        pred = grid.denoise(x, i)
        s, s_next = grid.levels[i], grid.levels[i + 1]
        if s_next > 0:
            x = x + (2 * (s_next - s) / s) * (x - pred.x0)
            x.add_(noise_like(x, generator), alpha=math.sqrt(2 * s * (s - s_next)))
        else:
            x = pred.x0.clone()
        report(callback, grid, i, x, pred)
    return x * grid.alphas[-1]
