"""Step schedules: the descending times a sampler visits, ending at the data (process.t_min)."""
from __future__ import annotations

from typing import Literal

import torch

from .process import NoiseProcess

Spacing = Literal["uniform", "leading", "trailing", "quadratic"]


def sampling_times(process: NoiseProcess, steps: int, spacing: Spacing = "uniform") -> torch.Tensor:
    """`steps` network times from t_max down, then t_min (the data): a float64 tensor of length steps + 1.

    'uniform' spans [t_max, 0] evenly (rounded to integer steps for a discrete process, like improved-diffusion's
    respacing); 'leading' and 'trailing' are diffusers' spacings (Lin et al. 2023, Table 2); 'quadratic' is DDIM's.
    """
    T = int(round(process.t_max)) + 1
    if not isinstance(steps, int) or not 1 <= steps <= T:
        raise ValueError(f"steps: expected an integer in [1, {T}], got {steps!r}")
    if spacing == "uniform":
        t = torch.linspace(T - 1, 0, steps, dtype=torch.float64).round()
    elif spacing == "leading":
        t = (torch.arange(steps, dtype=torch.float64) * (T // steps)).flip(0)
    elif spacing == "trailing":
        t = (torch.arange(T, 0, -T / steps, dtype=torch.float64).round() - 1)
    elif spacing == "quadratic":
        t = (torch.linspace(0, (0.8 * T) ** 0.5, steps, dtype=torch.float64) ** 2).round().flip(0)
    else:
        raise ValueError(f"spacing: expected one of uniform, leading, trailing, quadratic; got {spacing!r}")
    if len(torch.unique(t)) != steps:
        raise ValueError(f"steps: {steps} {spacing} steps of a {T}-step process repeat a time; use fewer steps")
    return torch.cat([t, torch.tensor([process.t_min], dtype=torch.float64)])
