"""Training losses: small callables `loss(denoiser, x0, cond, generator) -> per-example loss`."""
from __future__ import annotations

from typing import Literal, Optional

import torch

from .config import configurable, require
from .denoiser import Prediction, time_coefficients
from .prediction import to_x0_eps, x0_error_scale
from .time_sampling import ImportanceTimes, UniformTimes
from .utils import Generator, rand, randn
from .vlb import vlb_term

TimeSampling = Literal["uniform", "lognormal"]


@configurable
class SimpleLoss:
    """L_simple (Ho et al. 2020, eq. 14): E_{t, eps} |target - net(x_t, t)|^2 in the denoiser's prediction units.

    t_sampling 'uniform' draws t ~ U{0..T-1} (U[t_eps, 1] for a continuous process); 'lognormal' draws the noise level sigma/alpha ~ exp(N(p_mean, p_std^2))
    as in EDM (Karras et al. 2022, sec. 5): with prediction 'edm' this is exactly EDM's loss.
    min_snr_gamma weights the x0 error by min(SNR, gamma) (Hang et al. 2023).
    p_uncond replaces each class label by 'no label' (-1) with this probability, so one network learns p(x | y) and
    p(x) for classifier-free guidance (Ho & Salimans 2022, Alg. 1).
    """

    def __init__(self, t_sampling: TimeSampling = "uniform", min_snr_gamma: Optional[float] = None,
                 p_mean: float = -1.2, p_std: float = 1.2, p_uncond: float = 0.0):
        if t_sampling not in ("uniform", "lognormal"):
            raise ValueError(f"t_sampling: expected 'uniform' or 'lognormal', got {t_sampling!r}")
        if min_snr_gamma is not None and min_snr_gamma <= 0:
            raise ValueError(f"min_snr_gamma: expected a positive number, got {min_snr_gamma}")
        require(p_std > 0, "p_std", "a positive number", p_std)
        require(0 <= p_uncond < 1, "p_uncond", "a probability in [0, 1)", p_uncond)
        self.p_uncond = p_uncond
        self.t_sampling, self.min_snr_gamma = t_sampling, min_snr_gamma
        self.p_mean, self.p_std = p_mean, p_std

    def sample_t(self, process, n: int, generator: Generator = None, device=None) -> torch.Tensor:
        """Training times: uniform integer steps, or log-normal noise levels mapped to times."""
        if self.t_sampling == "uniform" and process.grid_step == 0:  # a continuous process: t ~ U[t_eps, t_max]
            u = rand((n,), generator, dtype=torch.float64)
            return (process.t_eps + u * (process.t_max - process.t_eps)).to(device)
        if self.t_sampling == "uniform":
            T = int(round(process.t_max)) + 1
            return (rand((n,), generator, dtype=torch.float64) * T).floor().clamp(max=T - 1).to(device)
        level = (self.p_mean + self.p_std * randn((n,), generator, dtype=torch.float64)).exp()
        return process.t_from_noise_level(level).clamp(process.t_eps, process.t_max).to(device)

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


def noised(process, x0: torch.Tensor, t: torch.Tensor, cond, p_uncond: float, generator: Generator):
    """(eps, x_t ~ q(x_t | x_0), cond with each label dropped with probability p_uncond)."""
    eps = randn(x0.shape, generator, device=x0.device, dtype=x0.dtype)
    if p_uncond > 0 and cond is not None:
        cond = drop_labels(cond, rand((x0.shape[0],), generator, device=x0.device) < p_uncond)
    return eps, process.q_sample(x0, t, eps), cond


def regression_error(denoiser, out: torch.Tensor, x0, eps, x_t, t) -> torch.Tensor:
    """|target - out|^2 per example, averaged over dimensions, in the denoiser's prediction units (L_simple's term)."""
    err = (out.float() - denoiser.target(x0, eps, x_t, t).float()) ** 2
    return err.reshape(err.shape[0], -1).mean(1)


@configurable
class HybridLoss:
    """L_hybrid = L_simple + lam L_vlb (Nichol & Dhariwal 2021, sec. 3.1), with L_vlb = T E_t[L_t] estimated by one
    term per example (`vlb.vlb_term`, bits/dim) whose mean is a stop-gradient, so L_vlb trains only the variance.

    t_sampling 'uniform', or 'importance': p_t proportional to sqrt(E[L_t^2]) (sec. 3.3; `ImportanceTimes`), each
    example weighted by 1 / (T p_t) so the loss stays unbiased. The sampler's history is part of the checkpoint.
    """

    hybrid = True

    def __init__(self, lam: float = 0.001, t_sampling: Literal["uniform", "importance"] = "uniform",
                 p_uncond: float = 0.0):
        require(lam > 0, "lam", "a positive weight of L_vlb", lam)
        require(t_sampling in ("uniform", "importance"), "t_sampling", "'uniform' or 'importance'", t_sampling)
        require(0 <= p_uncond < 1, "p_uncond", "a probability in [0, 1)", p_uncond)
        self.lam, self.t_sampling, self.p_uncond = lam, t_sampling, p_uncond
        self.times = None  # the time sampler, built for the process's T at the first call or load

    def _new_times(self, T: int):
        return (ImportanceTimes if self.t_sampling == "importance" else UniformTimes)(T)

    def time_sampler(self, T: int):
        """The time sampler for T steps (kept across calls: it learns)."""
        if self.times is None or self.times.T != T:
            self.times = self._new_times(T)
        return self.times

    def __call__(self, denoiser, x0: torch.Tensor, cond=None, generator: Generator = None) -> torch.Tensor:
        process = denoiser.process
        times = process.trained_times()
        sampler = self.time_sampler(len(times))
        idx, weight = sampler.draw(x0.shape[0], generator)
        t = times[idx].to(x0.device)
        eps, x_t, cond = noised(process, x0, t, cond, self.p_uncond, generator)
        out, v = denoiser.net_outputs(x_t, t, cond)
        _, alpha, sigma = time_coefficients(process, x_t, t)
        mean_out = out.detach() if self.hybrid else out  # the stop-gradient of L_hybrid (sec. 3.1)
        x0_hat, eps_hat = to_x0_eps(denoiser.prediction, mean_out, x_t, alpha, sigma, denoiser.sigma_data)
        term = vlb_term(denoiser, x0, t, x_t=x_t, pred=Prediction(x0_hat, eps_hat, v))
        sampler.update(idx, term)
        loss = sampler.T * term.float() * (self.lam if self.hybrid else 1.0)
        if self.hybrid:
            loss = loss + regression_error(denoiser, out, x0, eps, x_t, t)
        return loss * weight.to(loss.device, loss.dtype)

    def state_dict(self) -> dict:
        """The time sampler's history, saved with each checkpoint."""
        return {} if self.times is None else {"T": self.times.T, **self.times.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Restore the time sampler (a checkpoint without one starts it afresh)."""
        self.times = None
        if state.get("T") is not None:
            self.times = self._new_times(int(state["T"]))
            self.times.load_state_dict({k: v for k, v in state.items() if k != "T"})


@configurable
class VLBLoss(HybridLoss):
    """L_vlb alone (Nichol & Dhariwal 2021, sec. 3.3): T L_t for one t per example, the gradient reaching the mean and
    the variance; importance-sampled t by default, as in the paper."""

    hybrid = False

    def __init__(self, t_sampling: Literal["uniform", "importance"] = "importance", p_uncond: float = 0.0):
        super().__init__(1.0, t_sampling, p_uncond)


def drop_labels(cond, drop: torch.Tensor):
    """cond with the labels where `drop` is true replaced by 'no label' (-1)."""
    if isinstance(cond, dict):
        return {**cond, "label": drop_labels(cond["label"], drop)} if cond.get("label") is not None else cond
    return torch.where(drop, torch.full_like(cond, -1), cond)


@configurable
class ClassifierLoss:
    """Cross-entropy of a noisy classifier p_phi(y | x_t, t) on x_t ~ q(x_t | x_0), with t drawn as SimpleLoss draws it
    (Dhariwal & Nichol 2021, sec. 4.1): `loss(classifier, x0, labels, generator) -> per-example loss`."""

    def __init__(self, t_sampling: TimeSampling = "uniform"):
        self.times = SimpleLoss(t_sampling)

    def __call__(self, classifier, x0: torch.Tensor, cond=None, generator: Generator = None) -> torch.Tensor:
        if cond is None:
            raise ValueError("ClassifierLoss: needs the class labels as cond")
        process = classifier.process
        t = self.times.sample_t(process, x0.shape[0], generator, x0.device)
        x_t = process.q_sample(x0, t, randn(x0.shape, generator, device=x0.device, dtype=x0.dtype))
        return torch.nn.functional.cross_entropy(classifier(x_t, t).float(), cond.long(), reduction="none")
