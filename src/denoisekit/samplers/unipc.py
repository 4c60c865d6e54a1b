"""UniPC (Zhao et al. 2023): the unified predictor UniP-p and corrector UniC-p with B(h) = h (bh1) or e^h - 1 (bh2)."""
from __future__ import annotations

import math
from typing import Callable, Literal, Optional

import numpy as np
import torch

from ..utils import Generator
from .base import Grid, linear_multistep


def _unipc_step(lam: list[float], levels: list[float], i: int, p: int, variant: str):
    """Coefficients of UniP-p (predictor, against [m_i, m_{i-1}, ...]) and UniC-p (corrector, against
    [m_{i+1}, m_i, ...]) for the step i -> i+1 in the data-prediction form (Alg. 2 and 3, written in x~ = x/alpha).
    """
    h = lam[i + 1] - lam[i]
    hh = -h
    h_phi_1 = math.expm1(hh)
    a = levels[i + 1] / levels[i]
    pred = np.zeros(p)
    pred[0] = -h_phi_1
    B_h = hh if variant == "bh1" else math.expm1(hh)
    if p == 1:  # UniC-1 uses rho = 1/2 (diffusers' simplification)
        return (a, pred.tolist()), None if math.isinf(h) else (a, [-0.5 * B_h, -h_phi_1 + 0.5 * B_h])
    rks = np.array([(lam[i - k] - lam[i]) / h for k in range(1, p)] + [1.0])
    R, b = [], []
    h_phi_k, factorial = h_phi_1 / hh - 1, 1
    for j in range(1, p + 1):
        R.append(rks ** (j - 1))
        b.append(h_phi_k * factorial / B_h)
        factorial *= j + 1
        h_phi_k = h_phi_k / hh - 1 / factorial
    R, b = np.stack(R), np.array(b)
    rhos_p = np.array([0.5]) if p == 2 else np.linalg.solve(R[:-1, :-1], b[:-1])
    rhos_c = np.linalg.solve(R, b)
    # D1_k = (m_{i-k} - m_i) / r_k for k = 1..p-1, as coefficient vectors over [m_i, m_{i-1}, ...]
    for k in range(1, p):
        pred[k] -= B_h * rhos_p[k - 1] / rks[k - 1]
        pred[0] += B_h * rhos_p[k - 1] / rks[k - 1]
    corr = np.zeros(p + 1)  # over [m_{i+1}, m_i, m_{i-1}, ...]
    corr[1] = -h_phi_1
    for k in range(1, p):
        corr[k + 1] -= B_h * rhos_c[k - 1] / rks[k - 1]
        corr[1] += B_h * rhos_c[k - 1] / rks[k - 1]
    corr[0] -= B_h * rhos_c[-1]
    corr[1] += B_h * rhos_c[-1]
    return (a, pred.tolist()), (a, corr.tolist())


def unipc_plan(grid: Grid, order: int = 3, variant: str = "bh2"):
    """Predictor and corrector coefficients for every step; the order warms up and lowers towards the end
    (diffusers' lower_order_final), and the last step, to s = 0, is x~ = x0."""
    plan, corrector = [], []
    for i in range(grid.n):
        p = min(order, i + 1, grid.n - i)
        step, corr = _unipc_step(grid.lams, grid.levels, i, p, variant)
        plan.append(step)
        corrector.append(corr)
    return plan, corrector


@torch.no_grad()
def unipc_sample(denoiser, x_T, times, *, order: int = 3, variant: Literal["bh1", "bh2"] = "bh2",
                 corrector: bool = True, cond=None, generator: Generator = None,
                 callback: Optional[Callable] = None, progress: bool = False):
    """UniPC-p (Zhao et al. 2023): multistep UniP-p predictor plus the UniC corrector, which reuses the next step's
    network evaluation, so the order rises by one at no extra cost. One network evaluation per step."""
    if isinstance(order, bool) or order not in (1, 2, 3, 4):
        raise ValueError(f"order: expected 1, 2, 3 or 4, got {order!r}")
    if variant not in ("bh1", "bh2"):
        raise ValueError(f"variant: expected 'bh1' or 'bh2', got {variant!r}")
    grid = Grid(denoiser, times, x_T, cond)
    plan, corr = unipc_plan(grid, order, variant)
    return linear_multistep(grid, x_T, plan, corrector=corr if corrector else None, callback=callback,
                            progress=progress)
