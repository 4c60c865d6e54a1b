"""Samplers of critically-damped Langevin diffusion (Dockhorn et al., ICLR 2022) on the state u = (x, v): Euler-Maruyama
on the reverse SDE, the probability-flow ODE by adaptive Dormand-Prince, and the Symmetric Splitting CLD Sampler
(SSCS, their sec. 3.4 and app. D.2); each ends with the denoising step to t = 0 and returns the data part x."""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from tqdm.auto import tqdm

from ..config import require
from ..utils import Generator
from .base import check_times, noise_like


def velocity_score(denoiser, u: torch.Tensor, t: float, cond=None):
    """(score_v = -ell_t eps_v at (u, t), the prediction): HSM's velocity score (the paper's eq. 13)."""
    process = denoiser.process
    tt = torch.full((u.shape[0],), float(t), dtype=torch.float64, device=u.device)
    pred = denoiser(u, tt.to(u.dtype), cond)
    return -pred.eps * float(process.noise_scale(torch.tensor(t, dtype=torch.float64))), pred


def reverse_drift(process, u: torch.Tensor, score_v: torch.Tensor, probability_flow: bool = False) -> torch.Tensor:
    """-F u + c G G^T score in reverse time (c = 1 for the reverse SDE, 1/2 for the probability-flow ODE; Song et al.
    2021, eq. 6 and 13): dx = -M^-1 beta v, dv = (beta x + Gamma M^-1 beta v + c 2 Gamma beta score_v)."""
    x, v = process.split(u)
    b, G, m_inv = process.beta, process.damping, process.mass_inv
    c = 0.5 if probability_flow else 1.0
    return torch.cat([-m_inv * b * v, b * x + G * m_inv * b * v + c * 2 * G * b * score_v], 1)


def denoising_step(denoiser, u: torch.Tensor, t: float, cond=None):
    """The last step, from t_eps to 0: the reverse SDE's Euler mean without noise (CLD-SGM's `denoising`)."""
    score, pred = velocity_score(denoiser, u, t, cond)
    return u + t * reverse_drift(denoiser.process, u, score), pred


def _run(denoiser, x_T, times, step, *, cond, callback, progress, desc):
    """The loop every CLD sampler shares: `step(u, t, s)` between network times, the denoising step to the data."""
    times = check_times(times)
    require(float(times[-1]) == denoiser.process.t_min, "times", "a grid ending at the data (t = 0)",
            float(times[-1]))
    u = x_T
    n = len(times) - 1
    for i in tqdm(range(n), desc=desc, leave=False) if progress else range(n):
        t, s = float(times[i]), float(times[i + 1])
        u, pred = denoising_step(denoiser, u, t, cond) if s == 0 else step(u, t, s)
        if callback is not None:
            callback(i, times[i], u, pred)
    return denoiser.process.data_part(u)


@torch.no_grad()
def cld_em_sample(denoiser, x_T: torch.Tensor, times: torch.Tensor, *, cond=None, generator: Generator = None,
                  callback: Optional[Callable] = None, progress: bool = False):
    """Euler-Maruyama on CLD's reverse SDE: u <- u + (t - s) reverse_drift + G sqrt(t - s) z, z on v only."""
    process = denoiser.process
    g = math.sqrt(2 * process.damping * process.beta)

    def step(u, t, s):
        score, pred = velocity_score(denoiser, u, t, cond)
        u = u + (t - s) * reverse_drift(process, u, score)
        x, v = process.split(u)
        return torch.cat([x, v + g * math.sqrt(t - s) * noise_like(v, generator)], 1), pred

    return _run(denoiser, x_T, times, step, cond=cond, callback=callback, progress=progress, desc="cld em")


@torch.no_grad()
def sscs_sample(denoiser, x_T: torch.Tensor, times: torch.Tensor, *, cond=None, generator: Generator = None,
                callback: Optional[Callable] = None, progress: bool = False):
    """The Symmetric Splitting CLD Sampler (Dockhorn et al., Alg. 1): per step of size dt, an exact half-step of the
    reverse-time Ornstein-Uhlenbeck part, an Euler step of the score part dv = 2 Gamma beta (score_v + M^-1 v) dt,
    another exact half-step; then the denoising step."""
    process = denoiser.process
    two_g_b = 2 * process.damping * process.beta

    def half(u, dt):
        return process.linear_step(u, process.beta * dt / 2, noise_like(u, generator), reverse=True)

    def step(u, t, s):
        u = half(u, t - s)
        score, pred = velocity_score(denoiser, u, t, cond)
        x, v = process.split(u)
        u = torch.cat([x, v + (t - s) * two_g_b * (score + process.mass_inv * v)], 1)
        return half(u, t - s), pred

    return _run(denoiser, x_T, times, step, cond=cond, callback=callback, progress=progress, desc="sscs")


@torch.no_grad()
def cld_ode_sample(denoiser, x_T: torch.Tensor, times: torch.Tensor, *, rtol: float = 1e-4, atol: float = 1e-4,
                   cond=None, generator: Generator = None, callback: Optional[Callable] = None, progress: bool = False,
                   stats: Optional[dict] = None):
    """CLD's probability-flow ODE du/dt = F u - 1/2 G G^T score (Song et al. 2021, eq. 13) solved by dopri5 to (rtol,
    atol) in r = log t (du/dr = t du/dt, so no stage lands at t <= 0) from the first time to the last positive one,
    then the denoising step (CLD-SGM's ODE sampler). Only those two times of `times` matter."""
    try:
        from torchdiffeq import odeint
    except ImportError as e:  # a dependency of denoisekit; only a stripped environment lacks it
        raise ValueError("sampler 'cld_ode': needs the torchdiffeq package (pip install torchdiffeq)") from e
    for name, v in (("rtol", rtol), ("atol", atol)):
        require(not isinstance(v, bool) and isinstance(v, (int, float)) and v > 0, name, "a positive number", v)
    times = check_times(times)
    process, nfe = denoiser.process, [0]
    positive = [float(t) for t in times if t > 0]

    def f(r, u):
        nfe[0] += 1
        t = math.exp(float(r))
        score, _ = velocity_score(denoiser, u, t, cond)
        return -t * reverse_drift(process, u, score, probability_flow=True)

    u = x_T
    if len(positive) > 1:
        span = torch.tensor([positive[0], positive[-1]], dtype=torch.float64).log()
        u = odeint(f, x_T, span.to(x_T.dtype) if x_T.dtype != torch.float64 else span, rtol=rtol, atol=atol,
                   method="dopri5")[-1]
    pred = None
    if float(times[-1]) == 0:
        u, pred = denoising_step(denoiser, u, positive[-1], cond)
        nfe[0] += 1
    if stats is not None:
        stats["nfe"] = nfe[0]
    if callback is not None:
        callback(len(times) - 2, times[-2], u, pred)
    return process.data_part(u)
