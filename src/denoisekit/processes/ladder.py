"""NCSN's noise ladder (Song & Ermon 2019, sec. 4.1; SMLD): x_t = x_0 + sigma_t eps on L geometric noise levels, a
discrete VE process of the core whose trained times are the ladder's rungs, so the losses draw a rung uniformly and
the samplers (annealed Langevin first) visit the rungs exactly."""
from __future__ import annotations

import math

import torch

from ..config import configurable, require
from .base import NoiseProcess


def _t(t) -> torch.Tensor:
    return torch.as_tensor(t, dtype=torch.float64)


@configurable
class NoiseLadder(NoiseProcess):
    """sigma_1 = sigma_max > ... > sigma_L = sigma_min, geometric (Song & Ermon 2019): rung t = 0..L-1 has
    sigma(t) = sigma_min (sigma_max / sigma_min)^{t / (L - 1)}, alpha = 1; t = -1 is the data, with sigma linear in t on
    [-1, 0] so the process stays monotone and invertible between the data and the smallest rung. Networks see
    t scaled to DDPM's step range 0..999."""

    t_min, t_eps, grid_step = -1.0, 0.0, 1.0

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 1.0, levels: int = 10):
        require(isinstance(levels, int) and not isinstance(levels, bool) and levels >= 2, "levels",
                "an integer number of noise levels >= 2", levels)
        require(0 < sigma_min < sigma_max, "sigma_max", f"a number above sigma_min ({sigma_min}) > 0", sigma_max)
        self.sigma_min, self.sigma_max, self.levels = float(sigma_min), float(sigma_max), levels
        self.t_max = float(levels - 1)
        self.rung_ratio = math.log(self.sigma_max / self.sigma_min) / self.t_max  # log(sigma_{i} / sigma_{i+1})

    def sigmas(self) -> torch.Tensor:
        """The ladder sigma_1 > ... > sigma_L (float64)."""
        return self.sigma(torch.arange(self.levels - 1, -1, -1, dtype=torch.float64))

    def alpha(self, t):
        return torch.ones_like(_t(t))

    def sigma(self, t):
        t = _t(t)
        return torch.where(t >= 0, self.sigma_min * torch.exp(self.rung_ratio * t.clamp(min=0)),
                           self.sigma_min * (t + 1).clamp(min=0))

    def t_from_log_snr(self, lam):
        s = torch.exp(-0.5 * _t(lam))  # sigma = e^{-lambda / 2}
        return torch.where(s >= self.sigma_min, torch.log(s.clamp(min=self.sigma_min) / self.sigma_min) /
                           self.rung_ratio, s / self.sigma_min - 1)

    def sampling_defaults(self) -> dict:
        """Annealed Langevin over the rungs (Song & Ermon 2019), not DDPM's 100 steps: more than the ladder has times."""
        return {"sampler": "ald", "steps": self.levels}

    def net_time(self, t: torch.Tensor) -> torch.Tensor:
        return t * (999 / self.t_max)

    def from_net_time(self, c: torch.Tensor) -> torch.Tensor:
        return c * (self.t_max / 999)
