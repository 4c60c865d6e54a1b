"""Samplers: stateless functions `sampler(denoiser, x_T, times, *, cond, generator, callback, progress, **options)`,
and the one entry point `sample(denoiser, x_T, sampler=NAME, steps=N, schedule=NAME, **options)`."""
from __future__ import annotations

import inspect
from typing import Callable, Optional

import torch

from ..steps import SCHEDULES, sampling_times
from ..utils import Generator
from .auto import check_auto
from .ddim import ddim_interpolate, ddim_invert, ddim_sample, slerp
from .ddpm import ddpm_sample, ddpm_step
from .dpm_solver import dpmpp_2m_sample, dpmpp_2m_sde_sample, dpmpp_2s_sample, dpmpp_3m_sample
from .euler import euler_maruyama_sample, euler_sample, heun_sample
from .langevin import ald_sample, langevin_sample
from .multistep import deis_sample, ipndm_sample, pndm_sample
from .rk45 import rk45_sample
from .sde import em_sample, pc_sample, reverse_drift
from .unipc import unipc_sample

SAMPLERS: dict[str, Callable] = {
    "ddpm": ddpm_sample,
    "ddim": ddim_sample,
    "euler": euler_sample,
    "heun": heun_sample,
    "euler_maruyama": euler_maruyama_sample,
    "dpmpp_2m": dpmpp_2m_sample,
    "dpmpp_3m": dpmpp_3m_sample,
    "dpmpp_2s": dpmpp_2s_sample,
    "dpmpp_2m_sde": dpmpp_2m_sde_sample,
    "unipc": unipc_sample,
    "deis": deis_sample,
    "ipndm": ipndm_sample,
    "pndm": pndm_sample,
    "rk45": rk45_sample,
    "pc": pc_sample,
    "em": em_sample,
    "ald": ald_sample,
    "langevin": langevin_sample,
}

# The schedule each sampler gets when none is named: the time grids its paper used.
DEFAULT_SCHEDULES = {"ddpm": "uniform", "ddim": "uniform", "pndm": "uniform", "euler_maruyama": "uniform",
                     "pc": "uniform", "em": "uniform", "ald": "uniform", "langevin": "uniform"}
COMMON = ("cond", "generator", "callback", "progress")


def sampler_options(name: str) -> dict:
    """The options sampler `name` takes, with their defaults."""
    params = inspect.signature(get_sampler(name)).parameters.values()
    return {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY and p.name not in COMMON + ("stats",)}


def get_sampler(name: str) -> Callable:
    if name not in SAMPLERS:
        raise ValueError(f"sampler: expected one of {', '.join(SAMPLERS)}; got {name!r}")
    return SAMPLERS[name]


def check_options(name: str, options: dict) -> None:
    """A one-line error for an option the sampler does not take, naming the ones it does."""
    known = sampler_options(name)
    for key in options:
        if key not in known:
            takes = ", ".join(known) if known else "no options"
            raise ValueError(f"sampler {name!r}: unknown option {key!r}; it takes {takes}")


def check_request(sampler: str, schedule: Optional[str], options: dict, where: str = "schedule", *,
                  process=None, steps: Optional[int] = None) -> None:
    """Everything about a sampling request that can be checked before any work: the sampler, its options, the
    schedule's name (reported as `where`), and that 'auto' is asked only of a deterministic solver. Given the process
    and the steps too: that the schedule has that many distinct times, and the sampler's own `check(process, times,
    **options)` where it has one (a step size that would diverge)."""
    get_sampler(sampler)
    check_options(sampler, options)
    if schedule is not None:
        if schedule not in SCHEDULES:
            raise ValueError(f"{where}: expected one of {', '.join(SCHEDULES)}; got {schedule!r}")
        if schedule == "auto":
            check_auto(sampler, options)
    if process is not None and steps is not None and schedule != "auto":
        times = sampling_times(process, steps, schedule or DEFAULT_SCHEDULES.get(sampler, "karras"))
        check = getattr(get_sampler(sampler), "check", None)
        if check is not None:
            check(process, times, **options)


class CountingDenoiser(torch.nn.Module):
    """Counts network evaluations (NFE) of the denoiser it wraps; forwards `.process`."""

    def __init__(self, denoiser):
        super().__init__()
        self.inner, self.process, self.nfe = denoiser, denoiser.process, 0
        self.mean_shift = getattr(denoiser, "mean_shift", None)
        self.learned_variance = bool(getattr(denoiser, "learned_variance", False))

    def forward(self, *args, **kwargs):
        self.nfe += 1
        return self.inner(*args, **kwargs)


@torch.no_grad()
def sample(denoiser, x_T: torch.Tensor, sampler: str = "dpmpp_2m", steps: Optional[int] = None,
           schedule: Optional[str] = None, *, times: Optional[torch.Tensor] = None, cond=None,
           generator: Generator = None, callback: Optional[Callable] = None, progress: bool = False,
           stats: Optional[dict] = None, **options) -> torch.Tensor:
    """x_0 from x_T with any sampler in SAMPLERS over `steps` steps of a named schedule (or explicit `times`).

    `schedule` defaults to the sampler's own (DEFAULT_SCHEDULES, else 'karras'); 'auto' fits one to this model
    (samplers.auto). `options` go to the sampler and only to it (e.g. eta=0.5 for 'ddim', s_churn=40 for 'heun').
    `stats`, if a dict, receives the number of network evaluations used as stats['nfe'].
    """
    fn = get_sampler(sampler)
    if getattr(denoiser, "mean_shift", None) is not None and sampler != "ddpm":
        raise ValueError(f"sampler {sampler!r}: classifier guidance in the mean form shifts the ancestral DDPM "
                         f"posterior mean; use sampler 'ddpm', or the score form with {sampler!r}")
    if times is None:
        if steps is None:
            raise ValueError("steps: give the number of sampling steps (or explicit times)")
        schedule = schedule or DEFAULT_SCHEDULES.get(sampler, "karras")
    check_request(sampler, schedule if times is None else None, options)
    if times is None:
        if schedule == "auto":
            from .auto import auto_schedule
            times = auto_schedule(denoiser, sampler, steps, tuple(x_T.shape[1:]), cond=cond, options=options)
        else:
            times = sampling_times(denoiser.process, steps, schedule)
    model = CountingDenoiser(denoiser) if stats is not None else denoiser
    x = fn(model, x_T, times, cond=cond, generator=generator, callback=callback, progress=progress, **options)
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"sampler {sampler!r}: the samples are not finite (NaN or inf); check the model and the "
                         f"schedule")
    if stats is not None:
        stats["nfe"] = model.nfe
    return x


__all__ = ["COMMON", "DEFAULT_SCHEDULES", "SAMPLERS", "CountingDenoiser", "ald_sample", "check_options",
           "check_request", "ddim_interpolate", "ddim_invert", "ddim_sample", "ddpm_sample", "ddpm_step",
           "deis_sample", "dpmpp_2m_sample", "dpmpp_2m_sde_sample", "dpmpp_2s_sample", "dpmpp_3m_sample",
           "em_sample", "euler_maruyama_sample", "euler_sample", "get_sampler", "heun_sample", "ipndm_sample",
           "langevin_sample", "pc_sample", "pndm_sample", "reverse_drift", "rk45_sample", "sample",
           "sampler_options", "slerp", "unipc_sample"]
