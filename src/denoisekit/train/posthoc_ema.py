"""Post-hoc EMA (Karras et al. 2024, "Analyzing and Improving the Training Dynamics of Diffusion Models", sec. 3 and
App. C): power-function averages kept during training, and any other EMA length reconstructed from their snapshots.

A power-function EMA with exponent gamma averages the weights theta_1 .. theta_t of optimizer steps 1..t with weights
proportional to tau^gamma; its relative width is sigma_rel (eq. 3). Each snapshot is a known linear combination of the
theta_tau, so a profile never tracked is the least-squares combination of the stored snapshots (Alg. 3), here solved
on the exact discrete weights rather than the paper's continuous approximation.
"""
from __future__ import annotations

import copy
import math
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..utils import TMP_MARK

SIGMA_REL_MAX = 0.3  # sigma_rel(gamma) peaks at about 0.3002 (near gamma = -0.4); past it no gamma has that width
PROFILE_DIR = "ema_profiles"
_NAME = re.compile(r"sigma(\d+\.\d+)-step(\d+)\.safetensors")


def check_sigma_rel(sigma_rel, where: str = "sigma_rel") -> float:
    """A relative EMA width in (0, 0.3), or a one-line error naming `where`."""
    if isinstance(sigma_rel, bool) or not isinstance(sigma_rel, (int, float)) or not 0 < sigma_rel < SIGMA_REL_MAX:
        raise ValueError(f"{where}: expected a relative EMA width in (0, {SIGMA_REL_MAX}) (Karras et al. 2024 use "
                         f"0.05-0.1), got {sigma_rel!r}")
    return float(sigma_rel)


def gamma_to_sigma_rel(gamma: float) -> float:
    """sigma_rel = sqrt((gamma + 1) / ((gamma + 2)^2 (gamma + 3))) (Karras et al. 2024, eq. 3)."""
    return math.sqrt((gamma + 1) / ((gamma + 2) ** 2 * (gamma + 3)))


def sigma_rel_to_gamma(sigma_rel: float) -> float:
    """The largest real root of gamma^3 + 7 gamma^2 + (16 - s^-2) gamma + (12 - s^-2) = 0 (eq. 3 solved for gamma;
    Alg. 2): the exponent whose power-function EMA has relative width s."""
    s = check_sigma_rel(sigma_rel)
    c = 1 / s**2
    roots = np.roots([1.0, 7.0, 16.0 - c, 12.0 - c])
    return float(max(r.real for r in roots if abs(r.imag) < 1e-9 and r.real > -1))


def power_weights(gamma: float, t: int, taus: torch.Tensor) -> torch.Tensor:
    """The weight of theta_tau in the power-function EMA after t steps: ((tau/t)^(gamma+1) - ((tau-1)/t)^(gamma+1))
    for 1 <= tau <= t, else 0 (the recursion beta_t = (1 - 1/t)^(gamma+1) unrolled); float64."""
    taus = taus.to(torch.float64)
    w = (taus / t) ** (gamma + 1) - ((taus - 1).clamp(min=0) / t) ** (gamma + 1)
    return torch.where((taus >= 1) & (taus <= t), w, torch.zeros_like(w))


class PowerEMA:
    """One power-function EMA per gamma: theta^_t = beta_t theta^_{t-1} + (1 - beta_t) theta_t with
    beta_t = (1 - 1/t)^(gamma+1) (Karras et al. 2024, eq. 2), t the number of optimizer steps taken."""

    def __init__(self, model: nn.Module, sigma_rels: Sequence[float]):
        self.sigma_rels = tuple(check_sigma_rel(s, "ema_profiles") for s in sigma_rels)
        self.gammas = tuple(sigma_rel_to_gamma(s) for s in self.sigma_rels)
        self.models = [copy.deepcopy(model).eval().requires_grad_(False) for _ in self.sigma_rels]

    @torch.no_grad()
    def update(self, model: nn.Module, t: int) -> None:
        """Fold in theta_t, the weights after optimizer step t (t >= 1; at t = 1 the average is theta_1)."""
        params = [p.detach() for p in model.parameters()]
        for gamma, average in zip(self.gammas, self.models):
            beta = (1 - 1 / t) ** (gamma + 1)
            torch._foreach_lerp_(list(average.parameters()), params, 1 - beta)
            for b_avg, b in zip(average.buffers(), model.buffers()):
                b_avg.copy_(b)

    def state_tensors(self) -> dict:
        """Every profile's weights, keyed 'PROFILE.NAME', for the checkpoint (resuming continues the averages)."""
        return {f"{i}.{k}": v.detach().cpu().contiguous() for i, m in enumerate(self.models)
                for k, v in m.state_dict().items()}

    def load_state_tensors(self, tensors: dict, source) -> None:
        from .checkpoint import load_matching
        for i, m in enumerate(self.models):
            own = {k[len(f"{i}."):]: v for k, v in tensors.items() if k.startswith(f"{i}.")}
            load_matching(m, own, source)

    def snapshot(self, run_dir, t: int) -> list[Path]:
        """Write each profile's average after t steps to RUN/ema_profiles/sigmaS-stepT.safetensors, atomically."""
        folder = Path(run_dir) / PROFILE_DIR
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for s, gamma, m in zip(self.sigma_rels, self.gammas, self.models):
            path = folder / f"sigma{s:.4f}-step{t:07d}.safetensors"
            tmp = folder / f".{path.name}{TMP_MARK}{os.getpid()}"
            tensors = {k: v.detach().cpu().contiguous() for k, v in m.state_dict().items()}
            save_file(tensors, str(tmp), metadata={"gamma": repr(gamma), "sigma_rel": repr(s), "step": str(t)})
            os.replace(tmp, path)
            written.append(path)
        return written


def list_snapshots(run_dir) -> list[tuple[float, int, Path]]:
    """(gamma, step, file) of every snapshot a run stored, oldest first; a one-line error when it stored none."""
    folder = Path(run_dir) / PROFILE_DIR
    found = []
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            match = _NAME.fullmatch(p.name)
            if match is None:
                continue
            try:
                with safe_open(str(p), framework="pt") as f:
                    meta = f.metadata() or {}
                gamma, step = float(meta["gamma"]), int(meta["step"])
            except Exception as e:
                raise ValueError(f"ema: snapshot {p} is damaged or not a profile snapshot "
                                 f"({str(e).splitlines()[0][:120] if str(e) else type(e).__name__})") from None
            found.append((gamma, step, p))
    if not found:
        raise ValueError(f"ema: {run_dir} has no EMA profile snapshots ({PROFILE_DIR}/ is missing or empty); train "
                         f"with train.ema_profiles: [0.05, 0.1] to keep them")
    return sorted(found, key=lambda g: (g[1], g[0]))


def solve_coefficients(snapshots: Sequence[tuple[float, int]], gamma: float, t: int,
                       chunk: int = 1 << 16) -> tuple[torch.Tensor, float]:
    """x minimising || sum_i x_i w(gamma_i, t_i) - w(gamma, t) ||_2 over the step weights (Alg. 3 on the discrete
    weights), and the relative residual of that fit; snapshots after step t take no part (their x_i are 0)."""
    used = [i for i, (_, ti) in enumerate(snapshots) if ti <= t]
    if not used:
        raise ValueError(f"ema: no snapshot at or before step {t}")
    n = len(used)
    gram = torch.zeros(n, n, dtype=torch.float64)
    rhs = torch.zeros(n, dtype=torch.float64)
    target_sq = 0.0
    for start in range(1, t + 1, chunk):
        taus = torch.arange(start, min(t, start + chunk - 1) + 1, dtype=torch.float64)
        w = torch.stack([power_weights(snapshots[i][0], snapshots[i][1], taus) for i in used])
        target = power_weights(gamma, t, taus)
        gram += w @ w.T
        rhs += w @ target
        target_sq += float(target @ target)
    x = torch.linalg.lstsq(gram, rhs[:, None], driver="gelsd").solution[:, 0]
    residual_sq = max(0.0, float(x @ gram @ x - 2 * x @ rhs) + target_sq)
    coefficients = torch.zeros(len(snapshots), dtype=torch.float64)
    coefficients[used] = x
    return coefficients, math.sqrt(residual_sq / target_sq)


def reconstruct(run_dir, sigma_rel: float, step: int | None = None) -> tuple[dict, dict]:
    """The weights of the power-function EMA of width sigma_rel at `step` (default: the last snapshot's) from a run's
    snapshots, and a report {gamma, step, residual, snapshots}."""
    gamma = sigma_rel_to_gamma(sigma_rel)
    snaps = list_snapshots(run_dir)
    last = max(s for _, s, _ in snaps)
    if step is None:
        step = last
    if isinstance(step, bool) or not isinstance(step, int) or not 1 <= step <= last:
        raise ValueError(f"--step: expected a training step in 1..{last} (the last snapshot), got {step!r}")
    coefficients, residual = solve_coefficients([(g, s) for g, s, _ in snaps], gamma, step)
    total, dtypes = {}, {}
    for c, (_, _, path) in zip(coefficients.tolist(), snaps):
        if c == 0.0:
            continue
        with safe_open(str(path), framework="pt") as f:
            for k in f.keys():
                v = f.get_tensor(k)
                dtypes[k] = v.dtype
                if v.is_floating_point():
                    total[k] = total.get(k, 0) + c * v.to(torch.float64)
                else:  # counters and the like: the latest snapshot's
                    total[k] = v
    weights = {k: v.to(dtypes[k]) for k, v in total.items()}
    report = {"sigma_rel": float(sigma_rel), "gamma": gamma, "step": step, "relative_residual": residual,
              "snapshots": int((coefficients != 0).sum())}
    return weights, report
