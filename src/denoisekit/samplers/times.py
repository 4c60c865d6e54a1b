"""Step schedules: the descending times a sampler visits, from t_max down to the data (process.t_min).

Each schedule is expressed in the process's own terms (time, noise level sigma/alpha or log-SNR) and mapped to
times through the process's inverses, so it serves discrete and continuous processes alike. Every schedule has
`steps` network times, from t_max to the smallest trained time t_eps, then t_min: the last step lands on the data.
"""
from __future__ import annotations

from typing import Literal, get_args

import torch

from ..processes import NoiseProcess, Process

Schedule = Literal["uniform", "linspace", "leading", "trailing", "quadratic", "logsnr", "karras"]
SCHEDULES = get_args(Schedule) + ("auto",)  # 'auto' is fitted to a model: see samplers.auto
TIME_SCHEDULES = ("uniform", "linspace", "leading", "trailing", "quadratic")  # spaced in t: for any process


def _check_steps(steps) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected a positive integer, got {steps!r}")
    return steps


def _span(process: Process) -> float:
    """t_max - t_eps, plus one grid step for a discrete process: the number of trained steps when the grid is 1."""
    return process.t_max - process.t_eps + process.grid_step


def sampling_times(process: Process, steps: int, schedule: str = "uniform", *, rho: float = 7.0) -> torch.Tensor:
    """`steps` network times from t_max down, then t_min (the data): a float64 tensor of length steps + 1.

    uniform / linspace: evenly in t over [t_eps, t_max] (rounded to the trained grid; diffusers' 'linspace');
    leading / trailing: diffusers' spacings (Lin et al. 2023, Table 2); quadratic: DDIM's (Song et al. 2021, App. D.2);
    logsnr: evenly in log-SNR (Lu et al. 2022); karras: Karras et al. 2022, eq. 5, in the noise level sigma/alpha.
    """
    _check_steps(steps)
    if schedule in ("logsnr", "karras") and not isinstance(process, NoiseProcess):
        raise ValueError(f"schedule: {schedule!r} is spaced in the noise level sigma/alpha of the {NoiseProcess.family} "
                         f"family, which process {type(process).__name__} is not; use one spaced in time: "
                         f"{', '.join(TIME_SCHEDULES)}")
    t_max, t_eps = torch.tensor(process.t_max, dtype=torch.float64), torch.tensor(process.t_eps, dtype=torch.float64)
    u = torch.linspace(0, 1, steps, dtype=torch.float64)
    if schedule in ("uniform", "linspace"):
        t = process.round_t(t_max + (t_eps - t_max) * u)
    elif schedule == "leading":
        step = _span(process) / steps
        step = float(int(step)) if process.grid_step else step  # diffusers' integer stride T // steps
        t = process.round_t(t_eps + step * torch.arange(steps, dtype=torch.float64).flip(0))
    elif schedule == "trailing":
        g = process.grid_step  # diffusers: round(T - k T/steps) - 1
        t = process.round_t(t_max + g - _span(process) / steps * torch.arange(steps, dtype=torch.float64)) - g
    elif schedule == "quadratic":
        t = _distinct(process, process.round_t(t_eps + 0.8 * _span(process) * u.flip(0) ** 2))
    elif schedule == "logsnr":
        lam = process.log_snr(torch.stack([t_max, t_eps]))
        t = process.t_from_log_snr(lam[0] + (lam[1] - lam[0]) * u)
    elif schedule == "karras":
        t = process.t_from_noise_level(karras_levels(*level_range(process), steps, rho).flip(0))
    elif schedule == "auto":
        raise ValueError("schedule: 'auto' is fitted to a model; use denoisekit.sample(..., schedule='auto') or "
                         "samplers.auto_schedule")
    else:
        raise ValueError(f"schedule: expected one of {', '.join(SCHEDULES)}; got {schedule!r}")
    t = t.clamp(process.t_eps, process.t_max)
    if steps > 1 and not bool((t[1:] < t[:-1]).all()):
        n = int(round(_span(process) / process.grid_step)) if process.grid_step else 0
        trained = f" (it has {n} trained times)" if n else ""
        raise ValueError(f"steps: {steps} {schedule} steps of this process repeat a time{trained}; use fewer steps "
                         f"or another schedule")
    return torch.cat([t, torch.tensor([process.t_min], dtype=torch.float64)])


def level_range(process: NoiseProcess) -> tuple[float, float]:
    """(s_min, s_max): the noise levels sigma/alpha at the smallest trained time t_eps and at t_max."""
    ends = process.noise_level(torch.tensor([process.t_eps, process.t_max], dtype=torch.float64))
    return float(ends[0]), float(ends[1])


def karras_levels(lo: float, hi: float, n: int, rho: float = 7.0) -> torch.Tensor:
    """n noise levels from lo up to hi, evenly spaced in s^(1/rho) (Karras et al. 2022, eq. 5): ascending, float64."""
    if not rho > 0:
        raise ValueError(f"rho: expected a positive number, got {rho!r}")
    u = torch.linspace(0, 1, n, dtype=torch.float64)  # computed from the top down, as samplers always have (same bits)
    return ((hi ** (1 / rho) + u * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho).flip(0)


def _distinct(process: Process, t: torch.Tensor) -> torch.Tensor:
    """Descending grid times with repeats lifted one grid step above the next (quadratic's dense low end rounds
    several steps onto one trained time: 50 steps of T = 1000 start 0, 0, 1, 3, ...)."""
    g = process.grid_step
    if not g:
        return t
    t = t.clone()
    for i in range(len(t) - 2, -1, -1):
        t[i] = torch.maximum(t[i], t[i + 1] + g)
    return t


def times_from_levels(process: NoiseProcess, levels: torch.Tensor) -> torch.Tensor:
    """Times for a descending list of noise levels sigma/alpha ending at 0 (k-diffusion-style sigmas)."""
    levels = torch.as_tensor(levels, dtype=torch.float64)
    t = process.t_from_noise_level(levels.clamp(min=1e-300))
    return torch.where(levels > 0, t, torch.full_like(t, process.t_min))
