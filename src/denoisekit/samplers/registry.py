"""The samplers by name, the schedule each defaults to, the options each takes, and the family of processes each
needs: the one registry that `sample()`, the run config and the command line read."""
from __future__ import annotations

import inspect
from typing import Callable, Optional

from ..processes import CLDProcess, NoiseProcess, Process
from .cld import cld_em_sample, cld_ode_sample, sscs_sample
from .consistency import consistency_sample
from .ddgan import ddgan_sample
from .ddim import ddim_sample
from .ddpm import ddpm_sample
from .dpm_solver import dpmpp_2m_sample, dpmpp_2m_sde_sample, dpmpp_2s_sample, dpmpp_3m_sample
from .euler import euler_maruyama_sample, euler_sample, heun_sample
from .langevin import ald_sample, langevin_sample
from .multistep import deis_sample, ipndm_sample, pndm_sample
from .recovery import recovery_sample
from .rk45 import rk45_sample
from .sde import em_sample, pc_sample
from .unipc import unipc_sample

SAMPLERS: dict[str, Callable] = {}
# The schedule each sampler gets when none is named: for the fast ODE solvers, the measured pick of
# benchmarks/default_schedules.py (lowest worst error ratio on the analytic mixtures among the schedules within 1.1x of
# the best Frechet distance on the trained demo model, of those that end at the smallest trained level; heun keeps
# Karras's schedule, to which its churn is tuned: the pick, 'leading', over-disperses it by 8-21% at 50 steps); for
# the others, the time grid of their paper (else 'karras').
DEFAULT_SCHEDULES: dict[str, str] = {}
COMMON = ("cond", "generator", "callback", "progress")


def register_sampler(name: str, fn: Callable, *, family: type = NoiseProcess, schedule: Optional[str] = None) -> Callable:
    """Add sampler `fn(denoiser, x_T, times, *, cond, generator, callback, progress, **options)` under `name`, for the
    processes that are instances of `family`, with the default `schedule` (None: 'karras')."""
    if not (isinstance(family, type) and issubclass(family, Process)):
        raise ValueError(f"family: expected a Process class, got {family!r}")
    fn.family = family
    SAMPLERS[name] = fn
    if schedule is not None:
        DEFAULT_SCHEDULES[name] = schedule
    return fn


# Every built-in sampler works in x~ = x / alpha with the noise level s = sigma / alpha: the scalar-Gaussian family.
for _name, _fn, _schedule in (
        ("ddpm", ddpm_sample, "uniform"), ("ddim", ddim_sample, "uniform"), ("euler", euler_sample, None),
        ("heun", heun_sample, None), ("euler_maruyama", euler_maruyama_sample, "uniform"),
        ("dpmpp_2m", dpmpp_2m_sample, "logsnr"), ("dpmpp_3m", dpmpp_3m_sample, "logsnr"),
        ("dpmpp_2s", dpmpp_2s_sample, "leading"), ("dpmpp_2m_sde", dpmpp_2m_sde_sample, None),
        ("unipc", unipc_sample, "logsnr"), ("deis", deis_sample, None), ("ipndm", ipndm_sample, "logsnr"),
        ("pndm", pndm_sample, "uniform"), ("rk45", rk45_sample, None), ("pc", pc_sample, "uniform"),
        ("em", em_sample, "uniform"), ("ald", ald_sample, "uniform"), ("langevin", langevin_sample, "uniform"),
        # trailing: its network times start at t_max and stop a step short of t_eps, where f is the identity
        ("consistency", consistency_sample, "trailing"),
        # a DDGAN generator's T trained steps, each a draw of z and of the posterior (Xiao et al. 2022)
        ("ddgan", ddgan_sample, "uniform"),
        # a recovery-likelihood EBM's levels from the prior down, a short-run Langevin chain each (Gao et al. 2021)
        ("recovery", recovery_sample, "uniform")):
    register_sampler(_name, _fn, family=NoiseProcess, schedule=_schedule)
# Critically-damped Langevin diffusion's state (x, v) (Dockhorn et al. 2022), on CLD-SGM's uniform time steps.
for _name, _fn in (("sscs", sscs_sample), ("cld_em", cld_em_sample), ("cld_ode", cld_ode_sample)):
    register_sampler(_name, _fn, family=CLDProcess, schedule="uniform")


def get_sampler(name: str) -> Callable:
    """The sampler function registered under `name`; a one-line error names the registered ones."""
    if name not in SAMPLERS:
        raise ValueError(f"sampler: expected one of {', '.join(SAMPLERS)}; got {name!r}")
    return SAMPLERS[name]


def sampler_options(name: str) -> dict:
    """The options sampler `name` takes, with their defaults."""
    params = inspect.signature(get_sampler(name)).parameters.values()
    return {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY and p.name not in COMMON + ("stats",)}


def check_options(name: str, options: dict) -> None:
    """A one-line error for an option the sampler does not take, naming the ones it does."""
    known = sampler_options(name)
    for key in options:
        if key not in known:
            takes = ", ".join(known) if known else "no options"
            raise ValueError(f"sampler {name!r}: unknown option {key!r}; it takes {takes}")


def check_family(name: str, process) -> None:
    """A one-line error when sampler `name` needs a family of processes that `process` is not of."""
    family = get_sampler(name).family
    if not isinstance(process, family):
        fits = [k for k, fn in SAMPLERS.items() if isinstance(process, fn.family)]
        raise ValueError(f"sampler {name!r}: works on the {family.family} family of processes; this model's process "
                         f"{type(process).__name__} is {process.family}; use "
                         f"{'one of ' + ', '.join(fits) if fits else 'a sampler registered for it'}")
