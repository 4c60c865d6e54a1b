"""DDIM (Song et al. 2021): eta-controlled sampling, deterministic inversion and interpolation of encoded noises."""
from __future__ import annotations

import math
from typing import Callable, Optional, Union

import torch

from ..utils import Generator
from .base import Grid, noise_like, report, step_coefficients, steps_of
from .ddpm import ddpm_sample


def ancestral_levels(s: float, s_next: float, eta: float) -> tuple[float, float]:
    """(s_down, s_up) in x~ coordinates: DDIM's sigma_t(eta) (eq. 16) divided by alpha_{t-1}, as in k-diffusion."""
    if s_next <= 0 or eta == 0:
        return s_next, 0.0
    s_up = min(s_next, eta * math.sqrt(s_next**2 * (s**2 - s_next**2) / s**2))
    return math.sqrt(s_next**2 - s_up**2), s_up


def check_eta(eta) -> Union[float, str]:
    """eta in [0, 1] (DDIM's stochasticity, Song et al. 2021 eq. 16) or 'sigma_hat'; else a one-line error."""
    if eta == "sigma_hat":
        return eta
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0 <= eta <= 1:
        raise ValueError(f"eta: expected a number in [0, 1] or 'sigma_hat', got {eta!r}")
    return float(eta)


@torch.no_grad()
def ddim_sample(denoiser, x_T: torch.Tensor, times: torch.Tensor, *, eta: Union[float, str] = 0.0, cond=None,
                generator: Generator = None, callback: Optional[Callable] = None, progress: bool = False):
    """DDIM (Song et al. 2021, eq. 12) on any sub-sequence: x~_{i+1} = x0_hat + s_down eps_hat + s_up z.

    eta = 0 is the deterministic DDIM (an Euler step of the probability-flow ODE in x~, s); eta = 1 is ancestral DDPM
    with sigma^2 = beta-tilde; eta = 'sigma_hat' is the paper's sigma-hat = sqrt(1 - alpha-bar_t / alpha-bar_{t-1}),
    i.e. DDPM with sigma^2 = beta on the sub-sequence (Table 1's last row).
    """
    if check_eta(eta) == "sigma_hat":
        return ddpm_sample(denoiser, x_T, times, variance="beta", cond=cond, generator=generator,
                           callback=callback, progress=progress)
    grid = Grid(denoiser, times, x_T, cond)
    down_up = [ancestral_levels(grid.levels[i], grid.levels[i + 1], eta) for i in range(grid.n)]
    x = x_T / grid.alphas[0]
    for i in steps_of(grid, progress):
        pred = grid.denoise(x, i)
        s_down, s_up = down_up[i]  # x~' = x0 + s_down eps = x~ + (s_down - s) eps, since x~ = x0 + s eps
        x = torch.add(x, pred.eps, alpha=s_down - grid.levels[i]) if s_down > 0 else pred.x0.clone()
        if s_up > 0:
            x.add_(noise_like(x, generator), alpha=s_up)
        report(callback, grid, i, x, pred)
    return x * grid.alphas[-1]


def ddim_step(denoiser, x: torch.Tensor, t, s, *, cond=None, eta: float = 0.0,
              noise: Optional[torch.Tensor] = None):
    """One DDIM step from t to s < t per example (Song et al. 2021, eq. 12), differentiable (a distillation teacher's
    step): x~_s = x0_hat + s_down eps_hat + s_up z in x~ = x / alpha, s_up = eta's sigma_t / alpha_s. Returns
    (x_s, the prediction at t); `noise` z is needed only for eta > 0."""
    if check_eta(eta) == "sigma_hat":
        raise ValueError("eta: ddim_step takes a number in [0, 1]; sigma_hat is ddpm_step with variance='beta'")
    t, s, _, a_s, lvl_t, lvl_s = step_coefficients(denoiser.process, x, t, s)
    pred = denoiser(x, t, cond)
    s_up = torch.minimum(lvl_s, eta * (lvl_s**2 * (lvl_t**2 - lvl_s**2) / lvl_t**2).clamp(min=0).sqrt())
    s_down = (lvl_s**2 - s_up**2).clamp(min=0).sqrt()
    x_s = pred.x0 + s_down * pred.eps
    if eta > 0:
        if noise is None:
            raise ValueError("noise: ddim_step with eta > 0 needs the noise z (a tensor shaped like x)")
        x_s = x_s + s_up * noise
    return a_s * x_s, pred


@torch.no_grad()
def ddim_invert(denoiser, x_0: torch.Tensor, times: torch.Tensor, *, iters: int = 3, cond=None,
                callback: Optional[Callable] = None, progress: bool = False) -> torch.Tensor:
    """Deterministic encoding x_0 -> x_T over ascending `times` (Song et al. 2021, sec. 4.3): DDIM run upward.

    Each step solves for the x~' whose DDIM step down lands on the current x~, x~' = x~ + (s' - s) eps(x~', s'),
    by `iters` fixed-point iterations started from the previous step's eps (iters = 1 is about the usual explicit
    inversion); so sampling back over the same times reconstructs x_0 up to the fixed point's residual.
    """
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
        raise ValueError(f"iters: expected a positive integer, got {iters!r}")
    grid = Grid(denoiser, times, x_0, cond, descending=False)
    x = x_0 / grid.alphas[0]
    eps = None  # the previous step's last eps: a free first guess for this step's fixed point
    for i in steps_of(grid, progress, "inverting"):
        ds = grid.levels[i + 1] - grid.levels[i]
        x_next = x if eps is None else x + ds * eps
        for _ in range(iters):
            pred = grid.denoise(x_next, i + 1)
            x_next = x + ds * pred.eps
        x, eps = x_next, pred.eps
        report(callback, grid, i, x, pred)
    return x * grid.alphas[-1]


def slerp(z0: torch.Tensor, z1: torch.Tensor, w: float) -> torch.Tensor:
    """Spherical interpolation per sample (Shoemake 1985), as DDIM interpolates encoded noises (sec. 5.3)."""
    flat0, flat1 = z0.reshape(len(z0), -1), z1.reshape(len(z1), -1)
    cos = (flat0 * flat1).sum(1) / (flat0.norm(dim=1) * flat1.norm(dim=1))
    theta = cos.clamp(-1, 1).acos()
    sin = theta.sin()
    safe = sin.abs() > 1e-6
    c0 = torch.where(safe, ((1 - w) * theta).sin() / sin.where(safe, torch.ones_like(sin)), torch.full_like(sin, 1 - w))
    c1 = torch.where(safe, (w * theta).sin() / sin.where(safe, torch.ones_like(sin)), torch.full_like(sin, w))
    shape = (-1,) + (1,) * (z0.ndim - 1)
    return c0.reshape(shape) * z0 + c1.reshape(shape) * z1


@torch.no_grad()
def ddim_interpolate(denoiser, x_a: torch.Tensor, x_b: torch.Tensor, times: torch.Tensor, frames: int = 8, *,
                     iters: int = 3, progress: bool = False) -> torch.Tensor:
    """Encode x_a and x_b with DDIM inversion, slerp their noises, decode each: (frames, *x_a.shape) images."""
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 2:
        raise ValueError(f"frames: expected an integer of at least 2, got {frames!r}")
    times = torch.as_tensor(times, dtype=torch.float64)
    up = times.flip(0)
    z = ddim_invert(denoiser, torch.cat([x_a, x_b]), up, iters=iters, progress=progress)
    z_a, z_b = z[: len(x_a)], z[len(x_a):]
    zs = torch.cat([slerp(z_a, z_b, w) for w in torch.linspace(0, 1, frames).tolist()])
    out = ddim_sample(denoiser, zs, times, progress=progress)
    return out.reshape(frames, *x_a.shape)
