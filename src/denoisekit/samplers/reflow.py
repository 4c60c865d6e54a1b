"""Rectified flow's reflow (Liu et al. 2023, sec. 2.3): the coupling (z, x) a trained model's deterministic ODE makes
from the prior's draws z, on which a new flow is trained (`FlowMatchingLoss.on_pairs`), and the straightness of a
flow's paths (Liu et al. 2023, Def. 2.4), the quantity reflow lowers."""
from __future__ import annotations

from typing import Optional

import torch
from tqdm.auto import tqdm

from ..conditioning import Cond
from ..processes.flow import FlowProcess
from ..utils import sample_generators
from .entry import sample

# The deterministic samplers: a coupling is a function of z only.
ODE_SAMPLERS = ("euler", "heun", "ddim", "dpmpp_2m", "dpmpp_3m", "dpmpp_2s", "unipc", "deis", "ipndm", "pndm", "rk45")


@torch.no_grad()
def reflow_pairs(denoiser, n: int, shape, *, seed: int = 0, sampler: str = "dpmpp_2m", steps: int = 20,
                 schedule: Optional[str] = None, cond=None, progress: bool = False, batch: int = 500):
    """(z, x): n draws z of the prior (draw i from (seed, i), whatever n and the batch) and the model's ODE solution x
    from each, solved `batch` at a time; `cond` (labels or a Cond) has one entry per pair."""
    if sampler not in ODE_SAMPLERS:
        raise ValueError(f"sampler: a reflow coupling needs a deterministic ODE solver ({', '.join(ODE_SAMPLERS)}), "
                         f"got {sampler!r}")
    param = next(iter(denoiser.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    cond = Cond.of(cond)
    zs, xs = [], []
    for start in tqdm(range(0, n, batch), desc="reflow pairs", leave=False) if progress else range(0, n, batch):
        k = min(batch, n - start)
        z = denoiser.process.prior_sample((k, *shape), sample_generators(seed, k, offset=start), device=device)
        c = None if cond is None else cond.index(slice(start, start + k))
        zs.append(z)
        xs.append(sample(denoiser, z, sampler, steps, schedule, cond=c))
    return torch.cat(zs), torch.cat(xs)


@torch.no_grad()
def straightness(denoiser, z: torch.Tensor, steps: int = 100, cond=None) -> tuple[float, torch.Tensor]:
    """S = int_0^1 E |(z - x_0) / s_max - dx/ds|^2 ds per dimension along the model's ODE path from z at s_max =
    sigma(t_max) to the data at s = 0 (Liu et al. 2023, Def. 2.4, in the path's own coordinate s = sigma, where
    dx/ds = u = eps - x0 whatever the time shift), by Euler's method on `steps` uniform steps of s; 0 exactly for
    straight paths. Returns (S, the path's end x_0)."""
    process = denoiser.process
    if not isinstance(process, FlowProcess):
        raise ValueError(f"process: straightness is measured on the flow path; this model's process is "
                         f"{type(process).__name__}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected a positive integer, got {steps!r}")
    s_max = float(process.sigma(torch.tensor(process.t_max, dtype=torch.float64)))
    levels = torch.linspace(s_max, 0.0, steps + 1, dtype=torch.float64)
    x, velocities = z, []
    for k in range(steps):
        t = process.unshifted(levels[k]).to(z.device).expand(len(z))
        pred = denoiser(x, t, cond)
        u = pred.eps - pred.x0
        velocities.append(u)
        x = x + float(levels[k + 1] - levels[k]) * u
    line = (z - x) / s_max
    dims = z[0].numel()
    s = sum(float((line - u).pow(2).sum()) for u in velocities) / (steps * len(z) * dims)
    return s, x
