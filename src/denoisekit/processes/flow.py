"""The flow-matching / rectified-flow process (Lipman et al. 2023; Liu et al. 2023): the straight path
x_t = (1 - t) x_0 + t eps between the data and N(0, I), with the time shift of Esser et al. 2024 (eq. 23) as an
option, as a noise process of the core, so every sampler, loss and likelihood serves it unchanged."""
from __future__ import annotations

import torch

from ..config import configurable, require
from .continuous import ContinuousProcess, _t


@configurable
class FlowProcess(ContinuousProcess):
    """alpha(t) = 1 - s(t), sigma(t) = s(t) with the shifted time s(t) = shift t / (1 + (shift - 1) t) (shift 1: the
    plain path); t runs over [t_eps, 1 - t_eps], since alpha(1) = 0 has no log-SNR."""

    def __init__(self, shift: float = 1.0, t_eps: float = 1e-3):
        require(isinstance(shift, (int, float)) and shift > 0, "shift", "a positive number (1: no shift)", shift)
        super().__init__(t_eps)
        self.shift = float(shift)
        self.t_max = 1.0 - t_eps

    def shifted(self, t) -> torch.Tensor:
        """s(t) = shift t / (1 + (shift - 1) t) (Esser et al. 2024, eq. 23): more time at high noise for shift > 1."""
        t = _t(t)
        return self.shift * t / (1 + (self.shift - 1) * t)

    def unshifted(self, s) -> torch.Tensor:
        """The inverse of `shifted`: t = s / (shift - (shift - 1) s)."""
        s = _t(s)
        return s / (self.shift - (self.shift - 1) * s)

    def alpha(self, t):
        return 1 - self.shifted(t)

    def sigma(self, t):
        return self.shifted(t)

    def t_from_log_snr(self, lam):
        # (1 - s) / s = e^{lam/2}  =>  s = sigmoid(-lam/2)
        return self.unshifted(torch.sigmoid(-0.5 * _t(lam)))

    def sde(self, t):
        """f = d log alpha / dt = -s' / (1 - s), g^2 = d sigma^2 / dt - 2 f sigma^2 = 2 s' s / (1 - s), with
        s' = shift / (1 + (shift - 1) t)^2."""
        t = _t(t)
        s = self.shifted(t)
        ds = self.shift / (1 + (self.shift - 1) * t) ** 2
        return -ds / (1 - s), 2 * ds * s / (1 - s)
