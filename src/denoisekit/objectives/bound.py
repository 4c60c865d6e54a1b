"""The variational bound as a training objective: L_hybrid and L_vlb (Nichol & Dhariwal 2021, sec. 3.1 and 3.3)."""
from __future__ import annotations

from typing import Literal

import torch

from ..config import configurable, require
from ..denoiser import Prediction, time_coefficients
from ..prediction import to_x0_eps
from ..utils import Generator
from ..vlb import vlb_term
from .simple import noised, regression_error
from .time_sampling import ImportanceTimes, UniformTimes


@configurable
class HybridLoss:
    """L_hybrid = L_simple + lam L_vlb (Nichol & Dhariwal 2021, sec. 3.1), with L_vlb = T E_t[L_t] estimated by one
    term per example (`vlb.vlb_term`, bits/dim) whose mean is a stop-gradient, so L_vlb trains only the variance.

    t_sampling 'uniform', or 'importance': p_t proportional to sqrt(E[L_t^2]) (sec. 3.3; `ImportanceTimes`), each
    example weighted by 1 / (T p_t) so the loss stays unbiased. The sampler's history is part of the checkpoint.
    """

    hybrid = True
    term_names = ("simple", "vlb")  # logged beside the loss by the trainer

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
        return self.terms(denoiser, x0, cond, generator)["loss"]

    def terms(self, denoiser, x0: torch.Tensor, cond=None, generator: Generator = None) -> dict:
        """{'loss': the per-example loss, 'simple': its L_simple part, 'vlb': its lam L_vlb part}, each weighted."""
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
        vlb = sampler.T * term.float() * (self.lam if self.hybrid else 1.0)
        weight = weight.to(vlb.device, vlb.dtype)
        if not self.hybrid:
            return {"loss": vlb * weight}
        simple = regression_error(denoiser, out, x0, eps, x_t, t)
        return {"loss": (vlb + simple) * weight, "simple": simple.detach() * weight, "vlb": vlb.detach() * weight}

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
    term_names = ()

    def __init__(self, t_sampling: Literal["uniform", "importance"] = "importance", p_uncond: float = 0.0):
        super().__init__(1.0, t_sampling, p_uncond)
