"""Continuous-time processes of score-based SDEs (Song et al. 2021, sec. 3.4 and app. B) as noise processes of the core:
VP, sub-VP and VE, each with its marginal alpha(t), sigma(t) on t in [0, 1], its drift and diffusion in closed form,
and the inverse of its log-SNR, so every sampler, loss and likelihood serves them unchanged."""
from __future__ import annotations

import math

import torch

from ..config import configurable, require
from .base import NoiseProcess


def _t(t) -> torch.Tensor:
    return torch.as_tensor(t, dtype=torch.float64)


class ContinuousProcess(NoiseProcess):
    """t in [0, 1]: 0 is the data, 1 the prior; networks see 1000 t (the range of DDPM's step index)."""

    t_min, t_max, grid_step = 0.0, 1.0, 0.0

    def __init__(self, t_eps: float):
        require(0 < t_eps < 0.1, "t_eps", "a small positive time in (0, 0.1)", t_eps)
        self.t_eps = t_eps

    def net_time(self, t: torch.Tensor) -> torch.Tensor:
        return 1000 * t

    def from_net_time(self, c: torch.Tensor) -> torch.Tensor:
        return c / 1000


@configurable
class VPSDE(ContinuousProcess):
    """dx = -beta(t)/2 x dt + sqrt(beta(t)) dw with beta(t) = beta_min + t (beta_max - beta_min) (eq. 32): the
    continuous limit of DDPM. alpha(t) = exp(-B(t)/2), sigma^2 = 1 - alpha^2, with B(t) = int_0^t beta."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, t_eps: float = 1e-5):
        require(0 < beta_min < beta_max, "beta_max", f"a number above beta_min ({beta_min}) > 0", beta_max)
        super().__init__(t_eps)
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)

    def beta(self, t) -> torch.Tensor:
        return self.beta_min + _t(t) * (self.beta_max - self.beta_min)

    def integral(self, t) -> torch.Tensor:
        """B(t) = int_0^t beta(u) du."""
        t = _t(t)
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2

    def alpha(self, t):
        return torch.exp(-0.5 * self.integral(t))

    def sigma(self, t):
        return (-torch.expm1(-self.integral(t))).clamp(min=0).sqrt()

    def t_from_integral(self, B: torch.Tensor) -> torch.Tensor:
        """Inverse of B(t): the positive root of (d/2) t^2 + beta_min t - B = 0, d = beta_max - beta_min."""
        d = self.beta_max - self.beta_min
        return 2 * B / (self.beta_min + torch.sqrt(self.beta_min**2 + 2 * d * B))

    def t_from_log_snr(self, lam):
        # alpha^2 / sigma^2 = 1 / (e^B - 1) = e^lam  =>  B = log(1 + e^-lam)
        return self.t_from_integral(torch.nn.functional.softplus(-_t(lam)))

    def sde(self, t):
        b = self.beta(t)
        return -0.5 * b, b

    @property
    def prior_std(self) -> float:
        return 1.0


@configurable
class SubVPSDE(VPSDE):
    """dx = -beta(t)/2 x dt + sqrt(beta(t) (1 - e^{-2 B(t)})) dw (eq. 34): VP's mean, sigma = 1 - alpha^2 (a smaller
    variance), exactly the linear SDE with these marginals (f = d log alpha / dt, g^2 = d sigma^2 / dt - 2 f sigma^2)."""

    def sigma(self, t):
        return -torch.expm1(-self.integral(t))

    def t_from_log_snr(self, lam):
        # alpha / sigma = e^{-B/2} / (1 - e^{-B}) = e^{lam/2}  =>  with y = e^{-B/2}: y^2 c + y - c = 0, c = e^{lam/2}
        c = torch.exp(0.5 * _t(lam))
        y = (-1 + torch.sqrt(1 + 4 * c**2)) / (2 * c)
        return self.t_from_integral(-2 * torch.log(y))

    def sde(self, t):
        b = self.beta(t)
        return -0.5 * b, b * -torch.expm1(-2 * self.integral(t))


@configurable
class VESDE(ContinuousProcess):
    """dx = sqrt(d sigma^2 / dt) dw with sigma^2(t) = sigma_min^2 ((sigma_max / sigma_min)^{2t} - 1) (eq. 30 from clean
    data at t = 0): sigma(t) = sigma_min (sigma_max/sigma_min)^t away from t = 0, alpha = 1; NCSN's geometric noise."""

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, t_eps: float = 1e-5):
        require(0 < sigma_min < sigma_max, "sigma_max", f"a number above sigma_min ({sigma_min}) > 0", sigma_max)
        super().__init__(t_eps)
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.log_ratio = math.log(self.sigma_max / self.sigma_min)

    def alpha(self, t):
        return torch.ones_like(_t(t))

    def sigma(self, t):
        return self.sigma_min * torch.expm1(2 * self.log_ratio * _t(t)).clamp(min=0).sqrt()

    def t_from_log_snr(self, lam):
        # sigma^2 = e^{-lam}  =>  t = log(1 + e^{-lam} / sigma_min^2) / (2 log r)
        return torch.log1p(torch.exp(-_t(lam)) / self.sigma_min**2) / (2 * self.log_ratio)

    def sde(self, t):
        t = _t(t)
        return torch.zeros_like(t), 2 * self.log_ratio * self.sigma_min**2 * torch.exp(2 * self.log_ratio * t)
