"""An automatic step schedule fitted to the model: steps go where its own trajectories curve.

A few pilot noises are solved accurately with the model itself (dopri5 on the probability-flow ODE); the schedule is
a smooth monotone warp of log s (s = sigma/alpha), whose step density exp(w(u)) is piecewise linear in `knots`
values, from a first level at or below the top (like diffusers' 'leading' spacing, the prior noise may be taken at
a lower level where the model's denoiser barely depends on x) down to the smallest trained level; Nelder-Mead
chooses the knots and the first level to minimise the chosen sampler's final error against the pilot solutions at
the chosen number of steps. A flat w starting at the top is uniform in log-SNR. The fit and the fixed schedules are
then scored on a second, held-out set of four times as many pilots and the best of all is kept, so 'auto' is never
worse there than a named schedule; held out, because a fit that sends a few pilots near a mode boundary the right way can send fresh
noise the wrong way (measured: 4x the RMS error of 'quadratic' on fresh noise while better on its own pilots). Only
the model is used (never a ground truth), and results are cached per model, sampler, options and steps.
"""
from __future__ import annotations

import hashlib
import json
import math
import weakref
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..conditioning import Cond
from ..utils import atomic_save
from .registry import get_sampler
from .rk45 import rk45_sample
from .times import level_range, sampling_times, times_from_levels

_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
STOCHASTIC = ("ddpm", "euler_maruyama", "dpmpp_2m_sde", "rk45")  # rk45 adapts its own steps
HELD_OUT = 4  # held-out pilots per fitted one: an RMS error hinges on the rare pilot a coarse schedule sends astray
METHOD = 2  # in the cache key: schedules fitted by an earlier method are refitted (2: chosen on held-out pilots)
# the fit also weighs these, and keeps the best
FIXED = ("uniform", "leading", "trailing", "quadratic", "logsnr", "karras")


def warp_levels(w: np.ndarray, steps: int, lo: float, hi: float) -> np.ndarray:
    """`steps` noise levels from hi down to lo whose density in u = (log hi - log s)/(log hi - log lo) is exp(w(u)),
    w piecewise linear through the values `w` at evenly spaced knots (the integral is taken on a fine grid)."""
    knots = np.linspace(0, 1, len(w))
    fine = np.linspace(0, 1, 2049)
    cdf = np.concatenate([[0.0], np.cumsum(np.exp(np.interp(0.5 * (fine[1:] + fine[:-1]), knots, w)))])
    cdf /= cdf[-1]
    u = np.interp(np.linspace(0, 1, steps), cdf, fine)
    return np.exp(math.log(hi) + (math.log(lo) - math.log(hi)) * u)


def check_auto(sampler: str, options: dict) -> None:
    """The automatic schedule fits deterministic ODE solvers; a one-line error for the others."""
    if sampler in STOCHASTIC or options.get("eta", 0) != 0 or options.get("s_churn", 0) != 0:
        raise ValueError(f"schedule 'auto': fits deterministic ODE solvers to the model's trajectories; sampler "
                         f"{sampler!r} with {options or 'its defaults'} adds noise (use eta=0 / s_churn=0, or "
                         f"another schedule)")


def weights_digest(module) -> str:
    """A SHA-256 of the module's parameters and buffers, names, shapes, dtypes and bytes: any change to a weight (a
    sign flip, a permutation) changes it."""
    h = hashlib.sha256()
    for name, v in list(module.named_parameters()) + list(module.named_buffers()):
        v = v.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(v.shape)}:{v.dtype}".encode())
        h.update(v.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _key(denoiser, sampler: str, steps: int, shape, options: dict, pilots: int, knots: int, seed: int) -> str:
    """Cache key: the sampler's settings and a digest of the weights (a model that trains on is refitted)."""
    return json.dumps([METHOD, sampler, steps, list(shape), sorted(options.items()), pilots, knots, seed,
                       weights_digest(denoiser)], default=str)


@torch.no_grad()
def auto_schedule(denoiser, sampler: str, steps: int, shape, *, cond=None, options: Optional[dict] = None,
                  pilots: int = 64, knots: int = 6, seed: int = 0, max_evals: int = 400,
                  cache_file: Optional[str] = None) -> torch.Tensor:
    """Times for `sampler` with `steps` steps, fitted to this denoiser on `pilots` pilot trajectories (see above).

    `cache_file` (JSON) keeps fitted schedules across processes; the in-memory cache keeps them per denoiser.
    """
    from scipy.optimize import minimize

    options = dict(options or {})
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected a positive integer, got {steps!r}")
    check_auto(sampler, options)
    process = denoiser.process
    base = sampling_times(process, steps, "logsnr")
    if steps < 3:  # nothing to place: the ends are fixed
        return base
    key = _key(denoiser, sampler, steps, shape, options, pilots, knots, seed)
    memo = _CACHE.setdefault(denoiser, {})
    if key in memo:
        return memo[key].clone()
    stored = _read(cache_file)
    if key in stored:
        memo[key] = torch.tensor(stored[key], dtype=torch.float64)
        return memo[key].clone()

    param = next(iter(denoiser.parameters()), None)
    dtype = param.dtype if param is not None else torch.float64
    device = param.device if param is not None else torch.device("cpu")
    g = torch.Generator().manual_seed(seed)
    pilot_cond, held_cond = cycled(cond, pilots), cycled(cond, HELD_OUT * pilots)
    fit_set = pilot_set(denoiser, (pilots, *shape), g, pilot_cond, device, dtype)
    held_out = pilot_set(denoiser, (HELD_OUT * pilots, *shape), g, held_cond, device, dtype)
    ends = list(level_range(process))

    def times_for(params) -> torch.Tensor:
        skip, w = min(max(float(params[0]), 0.0), 0.9), np.asarray(params[1:])
        top = math.exp(math.log(ends[1]) + skip * (math.log(ends[0]) - math.log(ends[1])))
        levels = np.append(warp_levels(w, steps, ends[0], top), 0.0)
        t = times_from_levels(process, torch.from_numpy(levels))
        t[steps - 1] = process.t_eps
        if skip == 0:
            t[0] = process.t_max
        return t

    def loss(w) -> float:
        return loss_of_times(times_for(w))

    def loss_of_times(t, pilots=fit_set, cond=pilot_cond) -> float:
        if not bool((t[1:] < t[:-1]).all()):
            return 1e9
        x_T, ref = pilots
        x = solver(denoiser, x_T, t, cond=cond, generator=torch.Generator().manual_seed(0), **options)
        err = float((x - ref).double().pow(2).mean().sqrt())
        return math.log(err) if err > 0 and math.isfinite(err) else 1e9

    solver = get_sampler(sampler)
    best, best_loss = np.zeros(knots + 1), math.inf
    for skip in (0.0, 0.3):  # two starts: from the top, and already skipping (local optima differ)
        w0 = np.zeros(knots + 1)
        w0[0] = skip
        simplex = np.vstack([w0] + [w0 + (0.15 if k == 0 else 1.0) * np.eye(knots + 1)[k] for k in range(knots + 1)])
        result = minimize(loss, w0, method="Nelder-Mead", options={"maxfev": max_evals // 2, "xatol": 1e-3,
                                                                   "fatol": 1e-4, "initial_simplex": simplex})
        for params in (w0, result.x):
            value = loss(params) if params is w0 else result.fun
            if value < best_loss:
                best, best_loss = params, value
    times = times_for(best)
    best_loss = loss_of_times(times, held_out, held_cond)
    for name in FIXED:  # never worse on the held-out pilots than the best of the fixed schedules
        try:
            fixed = sampling_times(process, steps, name)
        except ValueError:  # more steps than the schedule has distinct trained times
            continue
        value = loss_of_times(fixed, held_out, held_cond)
        if value < best_loss:
            times, best_loss = fixed, value
    memo[key] = times
    if cache_file is not None:
        _write(cache_file, {**_read(cache_file), key: times.tolist()})
    return times.clone()


def cycled(cond, n: int) -> Optional[Cond]:
    """The conditioning of the first n pilots: the batch's examples in turn, repeated when it has fewer than n."""
    if cond is None:
        return None
    cond = Cond.of(cond)
    return cond.index(torch.arange(n) % len(cond))


def pilot_set(denoiser, shape, generator, cond, device, dtype) -> tuple:
    """(x_T, its probability-flow ODE solution by dopri5 to 1e-6): pilot noises and where the model takes them."""
    process = denoiser.process
    x_T = process.prior_sample(shape, generator, device=device, dtype=dtype)
    return x_T, rk45_sample(denoiser, x_T, sampling_times(process, 2), rtol=1e-6, atol=1e-6, cond=cond)


def _read(path) -> dict:
    if path is None or not Path(path).is_file():
        return {}
    try:
        data = json.loads(Path(path).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write(path, data: dict) -> None:
    atomic_save(path, lambda p: Path(p).write_text(json.dumps(data)))
