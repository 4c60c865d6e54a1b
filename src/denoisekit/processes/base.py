"""The forward processes' contract: `Process`, what every process has (time range, network time, state shape, prior,
SDE, perturbation of data), and `NoiseProcess`, the scalar-Gaussian family x_t = alpha(t) x_0 + sigma(t) eps under it,
with its formulas in float64 (score_sde's `SDE`; CLD-SGM's `sde_lib`, whose state is (x, v))."""
from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch

from ..utils import Generator, append_dims, randn


class Process(ABC):
    """A forward process from data (t_min) to a prior (t_max) on a state that may be larger than the data.

    What samplers, losses and the recipe may rely on for any process: its time range and trained grid, the time a
    network is given, the state's shape and its data part, q(state_t | x_0) by drawing (`perturb`), the prior, and the
    linear SDE d state = f state dt + g dw whose marginals it has. Samplers written for a narrower family (the scalar
    `NoiseProcess`) say so, and `samplers.check_request` refuses the others in one line before any work.
    """

    family = "generic"  # the name samplers' refusals use for this kind of process
    t_min: float  # the data end
    t_max: float  # the noise end, where sampling starts
    t_eps: float  # the smallest time the model was trained at (the last network time of a schedule)
    grid_step: float = 0.0  # spacing of the times a discrete model was trained at (0: continuous)

    def round_t(self, t: torch.Tensor) -> torch.Tensor:
        """Quantise times to the trained grid (a discrete model) or leave them (a continuous one); NVlabs/edm's round_sigma."""
        t = torch.as_tensor(t, dtype=torch.float64)
        if self.grid_step == 0:
            return t
        return ((t - self.t_eps) / self.grid_step).round() * self.grid_step + self.t_eps

    def net_time(self, t: torch.Tensor) -> torch.Tensor:
        """The time a network is given (continuous processes scale [0, 1] up to DDPM's step range)."""
        return t

    def from_net_time(self, c: torch.Tensor) -> torch.Tensor:
        """Inverse of net_time (for plain functions standing in for a network)."""
        return c

    def state_shape(self, data_shape) -> tuple:
        """The shape of one example's state given its data's (the data's own for a scalar process; (2, *data) for a
        process over position and velocity)."""
        return tuple(data_shape)

    def data_part(self, state: torch.Tensor) -> torch.Tensor:
        """The data inside a batch of states (the state itself for a scalar process)."""
        return state

    @abstractmethod
    def perturb(self, x0: torch.Tensor, t: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        """A draw of the state at times t (one per example) from q(state_t | x_0)."""

    @abstractmethod
    def prior_sample(self, shape, generator: Generator = None, *, device=None, dtype=torch.float32) -> torch.Tensor:
        """A batch of states from the prior at t_max; `shape` is (batch, *state_shape)."""

    @abstractmethod
    def prior_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p_T(state) per example."""

    @abstractmethod
    def sde(self, t):
        """(f(t), g(t)^2) of the forward SDE d state = f state dt + g dw (scalars, or matrices over the state's parts)."""

    def sampling_defaults(self) -> dict:
        """What a run config's sample and eval sections default to for this process, beyond the usual ones."""
        return {}

    def trained_times(self) -> torch.Tensor:
        """The network times of a discrete process, t_eps, t_eps + step, ..., t_max (float64); each step t has its
        predecessor t - grid_step, the first one the data. The variational bound sums one term per time."""
        if self.grid_step == 0:
            raise ValueError("process: the variational bound and its training losses need a discrete-time process "
                             "(one with a grid of trained times, like ddpm's)")
        n = int(round((self.t_max - self.t_eps) / self.grid_step)) + 1
        return self.t_eps + self.grid_step * torch.arange(n, dtype=torch.float64)


class NoiseProcess(Process):
    """The scalar-Gaussian family x_t = alpha(t) x_0 + sigma(t) eps; subclasses give alpha(t), sigma(t) and the
    inverse of the log-SNR."""

    family = "scalar Gaussian (x_t = alpha x_0 + sigma eps)"

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

    def perturb(self, x0: torch.Tensor, t: torch.Tensor, generator: Generator = None) -> torch.Tensor:
        """x_t = alpha x_0 + sigma eps with eps drawn from `generator` (one or one per example)."""
        return self.q_sample(x0, t, randn(x0.shape, generator, device=x0.device, dtype=x0.dtype))

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
