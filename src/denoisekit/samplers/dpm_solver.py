"""DPM-Solver++ (Lu et al. 2022b) in lambda = -log s, the data-prediction form, as k-diffusion writes it in x~, s."""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from ..utils import Generator
from .base import Grid, linear_multistep, report, steps_of


def _phi(h: float) -> tuple[float, float, float]:
    """(1 - e^{-h}, phi_2, phi_3): the exponential integrator's weights, phi_2 = 1 - (1 - e^{-h})/h, phi_3 = phi_2/h - 1/2."""
    one = -math.expm1(-h)
    phi_2 = 1 - one / h
    return one, phi_2, phi_2 / h - 0.5


def dpmpp_plan(grid: Grid, order: int):
    """Per-step (a, [b_0, b_1, b_2]) of DPM-Solver++(2M) (Alg. 2) or (3M), warming up with lower orders.

    x~_{i+1} = (s_{i+1}/s_i) x~_i + (1 - s_{i+1}/s_i) x0_i + phi_2 d1 - phi_3 d2, with d1 ~ h x0' and d2 ~ h^2 x0''
    the divided differences of past x0 predictions in lambda; the step to s = 0 is x~ = x0_i.

    3M departs from the reference code (LuChengTHU/dpm-solver, k-diffusion, diffusers), whose d2 = (d1_0 - d1_1) /
    (r0 + r1) estimates h^2 x0''/2 against the phi_3 weight of h^2 x0'': their 3M converges at order 2 (tested).
    """
    lam, plan = grid.lams, []
    for i in range(grid.n):
        if math.isinf(lam[i + 1]):
            plan.append((0.0, [1.0]))
            continue
        h = lam[i + 1] - lam[i]
        one, phi_2, phi_3 = _phi(h)
        a, b = math.exp(-h), [one, 0.0, 0.0]
        k = min(order, i + 1)
        if k == 2:
            r = (lam[i] - lam[i - 1]) / h
            if order == 2:  # Alg. 2's midpoint form: x0_d = (1 + 1/(2r)) x0_i - 1/(2r) x0_{i-1}
                b = [one * (1 + 1 / (2 * r)), -one / (2 * r), 0.0]
            else:
                b = [one + phi_2 / r, -phi_2 / r, 0.0]
        elif k == 3:
            r0, r1 = (lam[i] - lam[i - 1]) / h, (lam[i - 1] - lam[i - 2]) / h
            # d2 = 2 (d1_0 - d1_1)/(r0 + r1) estimates h^2 x0'': the factor 2 that makes the method third order
            c0 = phi_2 * (1 + r0 / (r0 + r1)) - 2 * phi_3 / (r0 + r1)  # weight of d1_0 = (x0_i - x0_{i-1}) / r0
            c1 = (2 * phi_3 - phi_2 * r0) / (r0 + r1)                   # weight of d1_1 = (x0_{i-1} - x0_{i-2}) / r1
            b = [one + c0 / r0, -c0 / r0 + c1 / r1, -c1 / r1]
        plan.append((a, b))
    return plan


@torch.no_grad()
def dpmpp_2m_sample(denoiser, x_T, times, *, cond=None, generator: Generator = None,
                    callback: Optional[Callable] = None, progress: bool = False):
    """DPM-Solver++(2M) (Lu et al. 2022b, Alg. 2): second-order multistep, one network evaluation per step."""
    grid = Grid(denoiser, times, x_T, cond)
    return linear_multistep(grid, x_T, dpmpp_plan(grid, 2), callback=callback, progress=progress)


@torch.no_grad()
def dpmpp_3m_sample(denoiser, x_T, times, *, cond=None, generator: Generator = None,
                    callback: Optional[Callable] = None, progress: bool = False):
    """DPM-Solver++(3M) (Lu et al. 2022b, App. B): third-order multistep, one network evaluation per step (with the
    divided difference d2 scaled to estimate h^2 x0'', see `dpmpp_plan`)."""
    grid = Grid(denoiser, times, x_T, cond)
    return linear_multistep(grid, x_T, dpmpp_plan(grid, 3), callback=callback, progress=progress)


@torch.no_grad()
def dpmpp_2s_sample(denoiser, x_T, times, *, cond=None, generator: Generator = None,
                    callback: Optional[Callable] = None, progress: bool = False):
    """DPM-Solver++(2S) (Lu et al. 2022b, Alg. 1): second-order single-step with the midpoint r = 1/2 in lambda.

    Two network evaluations per step except the last, which steps to s = 0 with x~ = x0.
    """
    grid = Grid(denoiser, times, x_T, cond)
    x = x_T / grid.alphas[0]
    for i in steps_of(grid, progress):
        pred = grid.denoise(x, i)
        s, s_next = grid.levels[i], grid.levels[i + 1]
        if s_next == 0:
            x = pred.x0.clone()
        else:
            s_mid = math.sqrt(s * s_next)  # lambda midpoint
            x_2 = (s_mid / s) * x + (1 - s_mid / s) * pred.x0
            x = (s_next / s) * x + (1 - s_next / s) * grid.denoise_at_level(x_2, s_mid).x0
        report(callback, grid, i, x, pred)
    return x * grid.alphas[-1]


@torch.no_grad()
def dpmpp_2m_sde_sample(denoiser, x_T, times, *, eta: float = 1.0, s_noise: float = 1.0, cond=None,
                        generator: Generator = None, callback: Optional[Callable] = None, progress: bool = False):
    """SDE-DPM-Solver++(2M) (Lu et al. 2022b, App. D; k-diffusion's midpoint form); eta = 0 is the ODE solver."""
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or eta < 0:
        raise ValueError(f"eta: expected a non-negative number, got {eta!r}")
    grid = Grid(denoiser, times, x_T, cond)
    lam, plan, stds = grid.lams, [], []
    for i in range(grid.n):
        if math.isinf(lam[i + 1]):
            plan.append((0.0, [1.0]))
            stds.append(0.0)
            continue
        h = lam[i + 1] - lam[i]
        one = -math.expm1(-h * (1 + eta))
        b = [one, 0.0]
        if i > 0:
            r = (lam[i] - lam[i - 1]) / h
            b = [one + 0.5 * one / r, -0.5 * one / r]
        plan.append((math.exp(-h * (1 + eta)), b))
        stds.append(s_noise * grid.levels[i + 1] * math.sqrt(-math.expm1(-2 * eta * h)))
    return linear_multistep(grid, x_T, plan, noise=stds, generator=generator, callback=callback, progress=progress)
