"""DDPM's discrete variance-preserving process (Ho et al. 2020) with its beta schedules."""
from __future__ import annotations

import torch

from ..config import configurable, require
from .base import NoiseProcess
from .schedules import make_betas, rescale_zero_terminal_snr


@configurable
class DiscreteVP(NoiseProcess):
    """DDPM's discrete variance-preserving process (Ho et al. 2020) on steps t = 0..T-1, with t = -1 the data.

    alpha-bar_t = prod_{s<=t} (1 - beta_s), alpha(t) = sqrt(alpha-bar_t), sigma(t) = sqrt(1 - alpha-bar_t).
    Between integer steps alpha-bar is interpolated linearly, which keeps it monotone and exactly invertible.
    """

    def __init__(self, schedule: str = "linear", T: int = 1000, betas=None, zero_terminal_snr: bool = False):
        require(isinstance(T, int) and not isinstance(T, bool) and 1 <= T <= 100_000, "T",
                "an integer number of steps in 1..100000", T)
        b = make_betas(schedule, T, betas)
        if zero_terminal_snr:
            b = rescale_zero_terminal_snr(b)
        self.betas = b
        self.T = len(b)
        self.alphas = 1 - b
        self.alpha_bar = torch.cumprod(self.alphas, 0)
        self.sigmas = (1 - self.alpha_bar).sqrt()                         # sigma_t at t = 0..T-1
        self.log_snrs = self.alpha_bar.log() - (1 - self.alpha_bar).log()  # lambda_t (-inf at zero terminal SNR)
        self.zero_terminal_snr = zero_terminal_snr
        self._ab_ext = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bar])  # index t+1
        self._tables: dict = {}
        self.t_min, self.t_max, self.t_eps, self.grid_step = -1.0, float(self.T - 1), 0.0, 1.0

    def _table(self, device) -> torch.Tensor:
        key = str(device)
        if key not in self._tables:
            self._tables[key] = self._ab_ext.to(device)
        return self._tables[key]

    def alpha_bar_at(self, t: torch.Tensor) -> torch.Tensor:
        """alpha-bar(t) for real t in [-1, T-1], linear between integer steps; alpha-bar(-1) = 1."""
        t = torch.as_tensor(t, dtype=torch.float64)
        table = self._table(t.device)
        u = (t + 1).clamp(0, self.T)
        i = u.floor().long().clamp(max=self.T - 1)
        w = u - i
        return table[i] * (1 - w) + table[i + 1] * w

    def alpha(self, t):
        return self.alpha_bar_at(t).sqrt()

    def sigma(self, t):
        return (1 - self.alpha_bar_at(t)).clamp(min=0).sqrt()

    def t_from_alpha_bar(self, ab: torch.Tensor) -> torch.Tensor:
        """Inverse of alpha_bar_at (values outside the table are clamped to its ends)."""
        ab = torch.as_tensor(ab, dtype=torch.float64)
        table = self._table(ab.device).flip(0)  # increasing: alpha-bar at t = T-1, ..., -1
        ab = ab.clamp(float(table[0]), 1.0)
        j = torch.searchsorted(table, ab.contiguous(), right=True).clamp(1, self.T)
        lo, hi = table[j - 1], table[j]
        w = torch.where(hi > lo, (ab - lo) / (hi - lo), torch.zeros_like(ab))
        u_rev = (j - 1) + w  # position in the flipped table
        return (self.T - u_rev) - 1

    def t_from_log_snr(self, lam):
        return self.t_from_alpha_bar(torch.sigmoid(torch.as_tensor(lam, dtype=torch.float64)))

    @property
    def prior_std(self) -> float:
        """DDPM's prior p(x_T) = N(0, I) (Ho et al. 2020, sec. 2)."""
        return 1.0
