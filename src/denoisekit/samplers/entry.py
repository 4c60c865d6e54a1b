"""The one entry point `sample(denoiser, x_T, sampler=NAME, steps=N, schedule=NAME, **options)`, and the checks of a
sampling request that run before any work."""
from __future__ import annotations

from typing import Callable, Optional

import torch

from ..utils import Generator
from .auto import auto_schedule, check_auto
from .registry import DEFAULT_SCHEDULES, check_family, check_options, get_sampler
from .times import SCHEDULES, sampling_times


def check_request(sampler: str, schedule: Optional[str], options: dict, where: str = "schedule", *,
                  process=None, steps: Optional[int] = None) -> None:
    """Everything about a sampling request that can be checked before any work: the sampler, its options, the
    schedule's name (reported as `where`), and that 'auto' is asked only of a deterministic solver. Given the process
    and the steps too: that the schedule has that many distinct times, and the sampler's own `check(process, times,
    **options)` where it has one (a step size that would diverge)."""
    get_sampler(sampler)
    check_options(sampler, options)
    if process is not None:
        check_family(sampler, process)
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


def check_model(sampler: str, model) -> None:
    """A one-line error when the model cannot be sampled by `sampler` (an energy model has no denoiser)."""
    only = getattr(model, "only_samplers", None)
    if only and sampler not in only:
        raise ValueError(f"sampler {sampler!r}: this model ({type(getattr(model, 'inner', model)).__name__}) has no "
                         f"denoiser for it; sample it with sampler {' or '.join(only)}")


class CountingDenoiser(torch.nn.Module):
    """Counts network evaluations (NFE) of the denoiser it wraps; forwards `.process`."""

    def __init__(self, denoiser):
        super().__init__()
        self.inner, self.process, self.nfe = denoiser, denoiser.process, 0
        self.mean_shift = getattr(denoiser, "mean_shift", None)
        self.learned_variance = bool(getattr(denoiser, "learned_variance", False))
        self.latent_dim = getattr(denoiser, "latent_dim", None)
        self.chain, self.only_samplers = getattr(denoiser, "chain", None), getattr(denoiser, "only_samplers", None)

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
    check_family(sampler, denoiser.process)
    check_model(sampler, denoiser)
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
