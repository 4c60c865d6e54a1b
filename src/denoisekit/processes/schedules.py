"""Beta schedules of the discrete VP (DDPM) process, as float64 tensors."""
from __future__ import annotations

import math

import torch


def linear_betas(T: int = 1000, beta_1: float = 1e-4, beta_T: float = 0.02) -> torch.Tensor:
    """Ho et al. 2020: betas linear from beta_1 to beta_T, scaled by 1000/T as in Nichol & Dhariwal 2021."""
    scale = 1000.0 / T
    return torch.linspace(scale * beta_1, scale * beta_T, T, dtype=torch.float64)


def cosine_alpha_bar(t: torch.Tensor, T: int, s: float = 0.008) -> torch.Tensor:
    """Nichol & Dhariwal 2021, eq. 17: alpha-bar(t) = f(t)/f(0), f(t) = cos^2(((t/T + s)/(1 + s)) pi/2)."""
    f = lambda u: torch.cos((u / T + s) / (1 + s) * math.pi / 2) ** 2
    return f(t.to(torch.float64)) / f(torch.zeros((), dtype=torch.float64))


def cosine_betas(T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Betas of the cosine schedule: beta_t = 1 - alpha-bar(t)/alpha-bar(t-1), clipped at max_beta."""
    t = torch.arange(T + 1, dtype=torch.float64)
    ab = cosine_alpha_bar(t, T, s)
    return (1 - ab[1:] / ab[:-1]).clamp(max=max_beta)


def vp_betas(T: int = 4, beta_min: float = 0.1, beta_max: float = 20.0, eps: float = 1e-3) -> torch.Tensor:
    """The VP SDE's alpha-bar(u) = exp(-beta_min u - (beta_max - beta_min) u^2 / 2) at u_i = eps + (1 - eps) i / T,
    i = 1..T, as betas: the schedule of denoising diffusion GANs for a few large steps (Xiao et al. 2022, App. C)."""
    u = eps + (1 - eps) * torch.arange(0, T + 1, dtype=torch.float64) / T
    ab = torch.exp(-beta_min * u - 0.5 * (beta_max - beta_min) * u**2)
    ab[0] = 1.0  # t = -1 is the data itself
    return 1 - ab[1:] / ab[:-1]


def drl_betas(T: int = 6, beta_1: float = 1e-4, beta_1000: float = 0.02) -> torch.Tensor:
    """The levels of diffusion recovery likelihood (Gao et al. 2021, sec. 4): DDPM's 1000-step linear schedule read at
    steps k_i = i * (1000 // (2 (T - 1))), i = 1..T-1, and at step 1000, as betas; dense near the data, one long last
    step to the prior (T = 6: alpha-bar 0.90, 0.66, 0.40, 0.20, 0.079, 4e-5)."""
    if T < 2 or 1000 // (2 * (T - 1)) < 1:
        raise ValueError(f"T: the drl schedule reads 1000 linear steps at T levels; it needs T in 2..501, got T={T}")
    ab = torch.cumprod(1 - torch.linspace(beta_1, beta_1000, 1000, dtype=torch.float64), 0)
    steps = [i * (1000 // (2 * (T - 1))) for i in range(1, T)] + [1000]
    levels = torch.cat([torch.ones(1, dtype=torch.float64), ab[torch.tensor(steps) - 1]])
    return 1 - levels[1:] / levels[:-1]


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Lin et al. 2023, Alg. 1: shift and scale sqrt(alpha-bar) so the last step has SNR 0 and the first is kept."""
    sqrt_ab = torch.cumprod(1 - betas.to(torch.float64), 0).sqrt()
    first, last = sqrt_ab[0].clone(), sqrt_ab[-1].clone()
    sqrt_ab = (sqrt_ab - last) * first / (first - last)
    ab = sqrt_ab**2
    alphas = torch.cat([ab[:1], ab[1:] / ab[:-1]])
    return 1 - alphas


def make_betas(schedule: str = "linear", T: int = 1000, betas=None) -> torch.Tensor:
    """Betas by name ('linear', 'cosine', 'vp', 'drl') or user-given ('custom' with `betas`)."""
    if schedule == "custom" or betas is not None:
        b = torch.as_tensor(betas, dtype=torch.float64)
        if b.ndim != 1 or len(b) < 1 or not bool(((b > 0) & (b <= 1)).all()):
            raise ValueError("betas: expected a 1-D sequence of values in (0, 1]")
        return b
    if schedule == "vp":
        return vp_betas(T)
    if schedule == "drl":
        return drl_betas(T)
    if schedule == "linear":
        if T < 20:  # scaled by 1000/T, the last beta passes 1 below T = 20 (and T = 1 never reaches noise)
            raise ValueError(f"T: the linear schedule (betas scaled by 1000/T) needs T >= 20, got T={T}; for a few "
                             f"large steps use schedule vp (Xiao et al. 2022) or cosine")
        return linear_betas(T)
    if schedule == "cosine":
        return cosine_betas(T)
    raise ValueError(f"schedule: expected 'linear', 'cosine', 'vp', 'drl' or 'custom', got {schedule!r}")
