"""L_simple (Ho et al. 2020) with EDM's log-normal times and min-SNR weighting, and the flow-matching loss with its
logit-normal and mode times: `loss(denoiser, x0, cond, generator) -> per-example loss`, and the noising every objective
shares."""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Literal, Optional

import torch

from ..conditioning import Cond
from ..config import configurable, require
from ..prediction import to_x0_eps, x0_error_scale
from ..utils import Generator, rand, randn

TimeSampling = Literal["uniform", "lognormal", "logit_normal", "mode"]
TIME_SAMPLINGS = ("uniform", "lognormal", "logit_normal", "mode")
FLOW_TIME_SAMPLINGS = ("logit_normal", "mode")  # densities over the flow path's t in (0, 1) (Esser et al. 2024)


@configurable
class SimpleLoss:
    """L_simple (Ho et al. 2020, eq. 14): E_{t, eps} |target - net(x_t, t)|^2 in the denoiser's prediction units.

    t_sampling 'uniform' draws t ~ U{0..T-1} (U[t_eps, t_max] for a continuous process); 'lognormal' draws the noise
    level sigma/alpha ~ exp(N(p_mean, p_std^2)) as in EDM (Karras et al. 2022, sec. 5): with prediction 'edm' this is
    exactly EDM's loss. On the flow process, 'logit_normal' draws t = sigmoid(N(logit_mean, logit_std^2)) and 'mode'
    t = 1 - u - mode_scale (cos^2(pi u / 2) - 1 + u), u ~ U[0, 1] (Esser et al. 2024, eq. 19 and 20).
    min_snr_gamma weights the x0 error by min(SNR, gamma) (Hang et al. 2023).
    p_uncond replaces each class label by 'no label' (-1) with this probability, so one network learns p(x | y) and
    p(x) for classifier-free guidance (Ho & Salimans 2022, Alg. 1).
    """

    def __init__(self, t_sampling: TimeSampling = "uniform", min_snr_gamma: Optional[float] = None,
                 p_mean: float = -1.2, p_std: float = 1.2, p_uncond: float = 0.0, logit_mean: float = 0.0,
                 logit_std: float = 1.0, mode_scale: float = 1.29):
        if t_sampling not in TIME_SAMPLINGS:
            raise ValueError(f"t_sampling: expected one of {', '.join(TIME_SAMPLINGS)}, got {t_sampling!r}")
        if min_snr_gamma is not None and min_snr_gamma <= 0:
            raise ValueError(f"min_snr_gamma: expected a positive number, got {min_snr_gamma}")
        require(p_std > 0, "p_std", "a positive number", p_std)
        require(logit_std > 0, "logit_std", "a positive number", logit_std)
        require(-1 <= mode_scale <= 2 / (math.pi - 2), "mode_scale",
                f"a number in [-1, {2 / (math.pi - 2):.4f}] (a density on (0, 1))", mode_scale)
        require(0 <= p_uncond < 1, "p_uncond", "a probability in [0, 1)", p_uncond)
        self.p_uncond = p_uncond
        self.t_sampling, self.min_snr_gamma = t_sampling, min_snr_gamma
        self.p_mean, self.p_std = p_mean, p_std
        self.logit_mean, self.logit_std, self.mode_scale = logit_mean, logit_std, mode_scale

    def sample_t(self, process, n: int, generator: Generator = None, device=None) -> torch.Tensor:
        """Training times: uniform integer steps, log-normal noise levels mapped to times, or the flow's densities."""
        if self.t_sampling == "uniform" and process.grid_step == 0:  # a continuous process: t ~ U[t_eps, t_max]
            u = rand((n,), generator, dtype=torch.float64)
            return (process.t_eps + u * (process.t_max - process.t_eps)).to(device)
        if self.t_sampling == "uniform":
            T = int(round(process.t_max)) + 1
            return (rand((n,), generator, dtype=torch.float64) * T).floor().clamp(max=T - 1).to(device)
        if self.t_sampling == "logit_normal":
            t = torch.sigmoid(self.logit_mean + self.logit_std * randn((n,), generator, dtype=torch.float64))
        elif self.t_sampling == "mode":
            u = rand((n,), generator, dtype=torch.float64)
            t = 1 - u - self.mode_scale * (torch.cos(math.pi / 2 * u) ** 2 - 1 + u)
        else:
            level = (self.p_mean + self.p_std * randn((n,), generator, dtype=torch.float64)).exp()
            t = process.t_from_noise_level(level)
        return t.clamp(process.t_eps, process.t_max).to(device)

    def __call__(self, denoiser, x0: torch.Tensor, cond=None, generator: Generator = None) -> torch.Tensor:
        process = denoiser.process
        t = self.sample_t(process, x0.shape[0], generator, x0.device)
        eps, x_t, cond = noised(process, x0, t, cond, self.p_uncond, generator)
        per_example = regression_error(denoiser, denoiser.net_output(x_t, t, cond), x0, eps, x_t, t)
        if self.min_snr_gamma is not None:
            alpha, sigma = process.alpha(t), process.sigma(t)
            snr = alpha**2 / sigma**2
            weight = snr.clamp(max=self.min_snr_gamma) / x0_error_scale(denoiser.prediction, alpha, sigma,
                                                                         denoiser.sigma_data)
            per_example = per_example * weight.to(per_example.dtype)
        return per_example


@configurable
class FlowMatchingLoss(SimpleLoss):
    """The conditional flow-matching loss (Lipman et al. 2023, eq. 23; Liu et al. 2023, eq. 1):
    E_{t, x0, eps} |u_theta(x_t, t) - (eps - x0)|^2 on the flow path, in velocity units whatever the network predicts
    (u_theta = eps_theta - x0_theta); its minimiser is u* = E[eps - x0 | x_t]. Times as in SimpleLoss."""

    def __init__(self, t_sampling: TimeSampling = "uniform", p_mean: float = -1.2, p_std: float = 1.2,
                 p_uncond: float = 0.0, logit_mean: float = 0.0, logit_std: float = 1.0, mode_scale: float = 1.29):
        super().__init__(t_sampling, None, p_mean, p_std, p_uncond, logit_mean, logit_std, mode_scale)

    def __call__(self, denoiser, x0: torch.Tensor, cond=None, generator: Generator = None) -> torch.Tensor:
        t = self.sample_t(denoiser.process, x0.shape[0], generator, x0.device)
        eps = randn(x0.shape, generator, device=x0.device, dtype=x0.dtype)
        return self.on_pairs(denoiser, x0, eps, cond, generator, t)

    def on_pairs(self, denoiser, x0: torch.Tensor, eps: torch.Tensor, cond=None, generator: Generator = None,
                 t: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The loss on given (x0, eps): independent draws (flow matching) or a coupling's pairs (reflow, Liu et al.
        2023, eq. 1 on the coupling); t drawn here unless given."""
        process = denoiser.process
        if t is None:
            t = self.sample_t(process, x0.shape[0], generator, x0.device)
        cond = Cond.of(cond)
        if self.p_uncond > 0 and cond is not None:
            cond = cond.drop(self.p_uncond, generator)
        x_t = process.q_sample(x0, t, eps)
        alpha, sigma = process.alpha(t).to(x0.dtype), process.sigma(t).to(x0.dtype)
        out = denoiser.net_output(x_t, t, cond, alpha=alpha, sigma=sigma)
        x0_hat, eps_hat = to_x0_eps(denoiser.prediction, out, x_t, alpha, sigma, denoiser.sigma_data)
        err = ((eps_hat - x0_hat).float() - (eps - x0).float()) ** 2
        return err.reshape(err.shape[0], -1).mean(1)


@configurable
class ReflowLoss(FlowMatchingLoss):
    """The flow-matching loss on a coupling's pairs (Liu et al. 2023, eq. 1 with (X0, X1) = (x, z) from the previous
    flow's ODE): each example's noise is its partner z, given in Cond.noise (a `PairedData` set's), not drawn."""

    def __call__(self, denoiser, x0: torch.Tensor, cond=None, generator: Generator = None) -> torch.Tensor:
        c = Cond.of(cond)
        if c is None or c.noise is None:
            raise ValueError("objective: reflow trains on pairs (z, x); the loss needs each example's noise z in "
                             "Cond.noise (a PairedData set)")
        rest = replace(c, noise=None)
        return self.on_pairs(denoiser, x0, c.noise.to(x0.dtype), rest if rest.items() else None, generator)


def noised(process, x0: torch.Tensor, t: torch.Tensor, cond, p_uncond: float, generator: Generator):
    """(eps, x_t ~ q(x_t | x_0), cond with each example's droppable slots dropped with probability p_uncond)."""
    eps = randn(x0.shape, generator, device=x0.device, dtype=x0.dtype)
    cond = Cond.of(cond)
    if p_uncond > 0 and cond is not None:
        cond = cond.drop(p_uncond, generator)
    return eps, process.q_sample(x0, t, eps), cond


def regression_error(denoiser, out: torch.Tensor, x0, eps, x_t, t) -> torch.Tensor:
    """|target - out|^2 per example, averaged over dimensions, in the denoiser's prediction units (L_simple's term)."""
    err = (out.float() - denoiser.target(x0, eps, x_t, t).float()) ** 2
    return err.reshape(err.shape[0], -1).mean(1)
