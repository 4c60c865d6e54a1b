"""Linear multistep solvers on eps in the noise level s: DEIS (rho-AB), iPNDM and PNDM (pseudo linear multistep)."""
from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
import torch
from numpy.polynomial import polynomial as P

from ..utils import Generator
from .base import Grid, linear_multistep, report, steps_of

# Adams-Bashforth weights for uniform steps, newest first (Zhang & Chen 2023, eq. 21; Liu et al. 2022, eq. 12)
AB_WEIGHTS = {1: [1.0], 2: [3 / 2, -1 / 2], 3: [23 / 12, -16 / 12, 5 / 12], 4: [55 / 24, -59 / 24, 37 / 24, -9 / 24]}


def _check_order(order, allowed=(1, 2, 3, 4)) -> int:
    if isinstance(order, bool) or order not in allowed:
        raise ValueError(f"order: expected one of {', '.join(map(str, allowed))}, got {order!r}")
    return order


def _integral_exp_poly(coef: np.ndarray, u0: float, u1: float) -> float:
    """int_{u0}^{u1} p(u) e^u du = [e^u (p - p' + p'' - ...)] for a polynomial p (ascending coefficients)."""
    total, d, sign = np.zeros_like(coef), coef, 1.0
    while d.size and np.any(d):
        total[: d.size] += sign * d
        d, sign = P.polyder(d), -sign
    f = lambda u: 0.0 if u == -math.inf else math.exp(u) * P.polyval(u, total)
    return f(u1) - f(u0)


def deis_plan(grid: Grid, order: int):
    """DEIS rho-AB (Zhang & Chen 2023, eq. 14): eps extrapolated by a Lagrange polynomial in log s through the last
    `order` points and integrated exactly in s: x~_{i+1} = x~_i + sum_j c_ij eps_{i-j}. The step to s = 0 is x~ = x0."""
    s, plan = grid.levels, []
    for i in range(grid.n):
        if s[i + 1] == 0:
            plan.append((1.0, [-s[i]]))
            continue
        k = min(order, i + 1)
        u = [math.log(s[i - j]) for j in range(k)]
        cs = []
        for j in range(k):
            others = [u[m] for m in range(k) if m != j]
            basis = P.polyfromroots(others) / np.prod([u[j] - o for o in others]) if others else np.array([1.0])
            cs.append(_integral_exp_poly(basis, u[0], math.log(s[i + 1])))
        plan.append((1.0, cs))
    return plan


def ipndm_plan(grid: Grid, order: int):
    """iPNDM (Zhang & Chen 2023, App. B): Adams-Bashforth with the uniform-step weights in s, lower orders to warm up."""
    s = grid.levels
    return [(1.0, [(s[i + 1] - s[i]) * w for w in AB_WEIGHTS[min(order, i + 1)]]) for i in range(grid.n)]


@torch.no_grad()
def deis_sample(denoiser, x_T, times, *, order: int = 3, cond=None, generator: Generator = None,
                callback: Optional[Callable] = None, progress: bool = False):
    """DEIS with the rho-AB exponential integrator (Zhang & Chen 2023); one network evaluation per step."""
    grid = Grid(denoiser, times, x_T, cond)
    return linear_multistep(grid, x_T, deis_plan(grid, _check_order(order)), use="eps", callback=callback,
                            progress=progress)


@torch.no_grad()
def ipndm_sample(denoiser, x_T, times, *, order: int = 4, cond=None, generator: Generator = None,
                 callback: Optional[Callable] = None, progress: bool = False):
    """iPNDM (Zhang & Chen 2023): PLMS with lower-order Adams-Bashforth warm-up; one network evaluation per step."""
    grid = Grid(denoiser, times, x_T, cond)
    return linear_multistep(grid, x_T, ipndm_plan(grid, _check_order(order)), use="eps", callback=callback,
                            progress=progress)


@torch.no_grad()
def pndm_sample(denoiser, x_T, times, *, cond=None, generator: Generator = None,
                callback: Optional[Callable] = None, progress: bool = False):
    """PNDM (Liu et al. 2022, Alg. 2): three pseudo Runge-Kutta steps (4 evaluations each, midpoints at half the time
    step) start the pseudo linear multistep method PLMS (eq. 12), whose transfer is DDIM's: x~' = x~ + (s' - s) eps."""
    grid = Grid(denoiser, times, x_T, cond)
    s, history = grid.levels, []
    t_mid = 0.5 * (grid.t[:-1] + grid.t[1:])
    s_mid = grid.process.noise_level(t_mid).tolist()
    x = x_T / grid.alphas[0]
    for i in steps_of(grid, progress):
        pred = grid.denoise(x, i)
        history.insert(0, pred.eps)
        if s[i + 1] == 0:
            x = pred.x0.clone()
        elif i < 3:  # PRK: classical RK4 on dx~/ds = eps with DDIM's transfer
            e1 = pred.eps
            e2 = grid.denoise_at_time(x + (s_mid[i] - s[i]) * e1, t_mid[i]).eps
            e3 = grid.denoise_at_time(x + (s_mid[i] - s[i]) * e2, t_mid[i]).eps
            e4 = grid.denoise(x + (s[i + 1] - s[i]) * e3, i + 1).eps
            x = x + (s[i + 1] - s[i]) / 6 * (e1 + 2 * e2 + 2 * e3 + e4)
        else:
            e = sum(w * m for w, m in zip(AB_WEIGHTS[4], history))
            x = x + (s[i + 1] - s[i]) * e
        del history[4:]
        report(callback, grid, i, x, pred)
    return x * grid.alphas[-1]
