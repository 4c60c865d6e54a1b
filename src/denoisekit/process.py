"""Noise processes x_t = alpha(t) x_0 + sigma(t) eps, with their formulas in float64."""
from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch

from .config import configurable, require
from .schedules import make_betas, rescale_zero_terminal_snr
from .utils import Generator, append_dims, randn


class NoiseProcess(ABC):
    """A Gaussian forward process; subclasses give alpha(t), sigma(t) and the inverse of the log-SNR."""

    t_min: float  # the data end: sigma(t_min) = 0
    t_max: float  # the noise end, where sampling starts
    t_eps: float  # the smallest time the model was trained at (the last network time of a schedule)
    grid_step: float = 0.0  # spacing of the times a discrete model was trained at (0: continuous)

    def round_t(self, t: torch.Tensor) -> torch.Tensor:
        """Quantise times to the trained grid (a discrete model) or leave them (a continuous one); NVlabs/edm's round_sigma."""
        t = torch.as_tensor(t, dtype=torch.float64)
        if self.grid_step == 0:
            return t
        return ((t - self.t_eps) / self.grid_step).round() * self.grid_step + self.t_eps

    @abstractmethod
    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """Signal scale alpha(t), float64."""

    @abstractmethod
    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Noise scale sigma(t), float64."""

    @abstractmethod
    def t_from_log_snr(self, lam: torch.Tensor) -> torch.Tensor:
        """Inverse of lambda(t) = log(alpha^2 / sigma^2)."""

    def log_snr(self, t: torch.Tensor) -> torch.Tensor:
        """Log signal-to-noise ratio lambda(t) = 2 log(alpha(t) / sigma(t))."""
        return 2 * (self.alpha(t).log() - self.sigma(t).log())

    def noise_level(self, t: torch.Tensor) -> torch.Tensor:
        """sigma(t)/alpha(t): the noise level of x_t/alpha(t) = x_0 + (sigma/alpha) eps (EDM/VE coordinates)."""
        return self.sigma(t) / self.alpha(t)

    def t_from_noise_level(self, level: torch.Tensor) -> torch.Tensor:
        """Inverse of noise_level: lambda = -2 log(sigma/alpha)."""
        return self.t_from_log_snr(-2 * torch.as_tensor(level, dtype=torch.float64).log())

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Closed-form q(x_t | x_0) (Ho et al. 2020, eq. 4): x_t = alpha(t) x_0 + sigma(t) eps."""
        a = append_dims(self.alpha(t), x0.ndim).to(x0.dtype)
        s = append_dims(self.sigma(t), x0.ndim).to(x0.dtype)
        return a * x0 + s * eps

    def posterior(self, x_t: torch.Tensor, x0: torch.Tensor, t: torch.Tensor, s: torch.Tensor):
        """q(x_s | x_t, x_0) for s < t: mean and variance (Ho et al. 2020 eq. 6-7; Kingma et al. 2021 eq. 32-33).

        With alpha_{t|s} = alpha_t/alpha_s and sigma^2_{t|s} = sigma_t^2 - alpha_{t|s}^2 sigma_s^2:
        mean = alpha_{t|s} sigma_s^2/sigma_t^2 x_t + alpha_s sigma^2_{t|s}/sigma_t^2 x_0,
        var = sigma^2_{t|s} sigma_s^2 / sigma_t^2 (beta-tilde for consecutive DDPM steps).
        """
        c_xt, c_x0, var = self.posterior_coefficients(t, s)
        n = x_t.ndim
        mean = append_dims(c_xt, n).to(x_t.dtype) * x_t + append_dims(c_x0, n).to(x_t.dtype) * x0
        return mean, var

    def posterior_coefficients(self, t: torch.Tensor, s: torch.Tensor):
        """(c_xt, c_x0, var) with q(x_s | x_t, x_0) = N(c_xt x_t + c_x0 x_0, var), float64 (see `posterior`)."""
        a_t, s_t, a_s, s_s = self.alpha(t), self.sigma(t), self.alpha(s), self.sigma(s)
        var_ts = self.transition_variance(t, s)
        return (a_t / a_s) * s_s**2 / s_t**2, a_s * var_ts / s_t**2, var_ts * s_s**2 / s_t**2

    def transition_variance(self, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """sigma^2_{t|s} = sigma_t^2 - (alpha_t/alpha_s)^2 sigma_s^2, the variance of q(x_t | x_s) (beta_t for one step)."""
        return self.sigma(t) ** 2 - (self.alpha(t) / self.alpha(s)) ** 2 * self.sigma(s) ** 2

    def sde(self, t):
        """(f(t), g(t)^2) of the linear SDE dx = f x dt + g dw with this process's marginals: f = d log alpha / dt,
        g^2 = d sigma^2 / dt - 2 f sigma^2 (Song et al. 2021, eq. 5-6; by autograd unless a subclass has it closed)."""
        with torch.enable_grad():
            t = torch.as_tensor(t, dtype=torch.float64).detach().requires_grad_(True)
            log_alpha, var = self.alpha(t).log(), self.sigma(t) ** 2
            f = torch.autograd.grad(log_alpha.sum(), t, retain_graph=True)[0] if log_alpha.requires_grad \
                else torch.zeros_like(t)
            dvar = torch.autograd.grad(var.sum(), t)[0]
        return f, dvar - 2 * f * var.detach()

    def net_time(self, t: torch.Tensor) -> torch.Tensor:
        """The time a network is given (continuous processes scale [0, 1] up to DDPM's step range)."""
        return t

    def from_net_time(self, c: torch.Tensor) -> torch.Tensor:
        """Inverse of net_time (for plain functions standing in for a network)."""
        return c

    def sampling_defaults(self) -> dict:
        """What a run config's sample and eval sections default to for this process, beyond the usual ones."""
        return {}

    def prior_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log N(x; 0, prior_std^2 I) per example."""
        d = x[0].numel()
        sp = self.prior_std
        return -0.5 * (x / sp).pow(2).reshape(len(x), -1).sum(1) - d * (math.log(sp) + 0.5 * math.log(2 * math.pi))

    @property
    def prior_std(self) -> float:
        """The prior's scale: p(x_T) = N(0, prior_std^2 I), sigma(t_max) (alpha(t_max) x_0 is taken as negligible)."""
        return float(self.sigma(torch.tensor(self.t_max, dtype=torch.float64)))

    def prior_sample(self, shape, generator: Generator = None, *, device=None, dtype=torch.float32):
        """A draw from the prior N(0, prior_std^2 I)."""
        return self.prior_std * randn(shape, generator, device=device, dtype=dtype)

    def trained_times(self) -> torch.Tensor:
        """The network times of a discrete process, t_eps, t_eps + step, ..., t_max (float64); each step t has its
        predecessor t - grid_step, the first one the data. The variational bound sums one term per time."""
        if self.grid_step == 0:
            raise ValueError("process: the variational bound and its training losses need a discrete-time process "
                             "(one with a grid of trained times, like ddpm's)")
        n = int(round((self.t_max - self.t_eps) / self.grid_step)) + 1
        return self.t_eps + self.grid_step * torch.arange(n, dtype=torch.float64)


@configurable
class DiscreteVP(NoiseProcess):
    """DDPM's discrete variance-preserving process (Ho et al. 2020) on steps t = 0..T-1, with t = -1 the data.

    alpha-bar_t = prod_{s<=t} (1 - beta_s), alpha(t) = sqrt(alpha-bar_t), sigma(t) = sqrt(1 - alpha-bar_t).
    Between integer steps alpha-bar is interpolated linearly, which keeps it monotone and exactly invertible.
    """

    def __init__(self, schedule: str = "linear", T: int = 1000, betas=None, zero_terminal_snr: bool = False):
        require(isinstance(T, int) and not isinstance(T, bool) and 2 <= T <= 100_000, "T",
                "an integer number of steps in 2..100000", T)
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
