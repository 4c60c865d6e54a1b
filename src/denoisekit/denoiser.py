"""The denoiser: a network, a noise process and a prediction type, answering (x0, eps) for any x_t, t."""
from __future__ import annotations

from dataclasses import dataclass
import inspect
import math
from typing import Any, Callable, Optional

import torch
from torch import nn

from .conditioning import Cond
from .config import configurable, require
from .prediction import (PREDICTION_TYPES, bcast, check_prediction, consistency_x0, from_x0_eps, network_inputs,
                         to_x0_eps)
from .processes import CLDProcess, NoiseProcess


@dataclass
class Prediction:
    """What a denoiser predicts at (x_t, t): the clean data and the noise, and for a model with learned variance the
    interpolation v of its reverse-step variance (Nichol & Dhariwal 2021, eq. 15; see `vlb.model_log_variance`)."""
    x0: torch.Tensor
    eps: torch.Tensor
    v: Optional[torch.Tensor] = None


def time_coefficients(process: NoiseProcess, x_t: torch.Tensor, t, alpha=None, sigma=None):
    """(t, alpha(t), sigma(t)), each broadcastable over the batch; alpha and sigma may come precomputed."""
    if alpha is not None and sigma is not None and isinstance(t, torch.Tensor) and t.ndim == 1:
        return t, alpha, sigma  # a sampler's precomputed step: nothing to look up
    t = torch.as_tensor(t, device=x_t.device)
    if alpha is None or sigma is None:
        t = t.to(torch.float64)
        alpha, sigma = process.alpha(t), process.sigma(t)
    if t.ndim == 0:
        t = t.expand(x_t.shape[0])
    return t, alpha, sigma


@configurable
class Denoiser(nn.Module):
    """`model(x_t, t, cond) -> Prediction(x0, eps)` for a network trained with any prediction type.

    `clip_x0` clamps the predicted x0 to [-clip_x0, clip_x0] (eps is recomputed to match).
    `learned_variance`: the network outputs twice the data's channels, the prediction and then v' in [-1, 1] roughly,
    split here once: Prediction.v = (v' + 1) / 2 (improved-diffusion's parametrisation of Nichol & Dhariwal's v).
    `consistency`: x0 is the consistency function f(x~, s) = c_skip x~ + c_out F of a consistency model (Song et al.
    2023, eq. 9), F the EDM output of the prediction type, so f(x, s_min) = x exactly at the smallest trained noise
    level s_min = noise_level(t_eps) (`prediction.consistency_x0`); with prediction 'edm' it is the paper's network.
    `mixed_score`: LSGM's mixed score (Vahdat et al. 2021, sec. 3.1), eps = (1 - a) sigma x_t / (alpha^2 + sigma^2) +
    a eps', the eps of N(0, I) diffused plus the network's eps' mixed by a = sigmoid(logit) learned per dimension of
    `mixed_shape`, a starting at the given value in (0, 1); eps-prediction only.
    """

    def __init__(self, net: nn.Module, process: NoiseProcess, prediction: str = "eps",
                 sigma_data: float = 0.5, clip_x0: Optional[float] = None, learned_variance: bool = False,
                 consistency: bool = False, mixed_score: Optional[float] = None, mixed_shape: Optional[list] = None):
        super().__init__()
        self.net = net
        self.process = process
        self.prediction = check_prediction(prediction)
        if getattr(process, "zero_terminal_snr", False) and prediction in ("eps", "score"):
            raise ValueError(f"prediction: {prediction!r} cannot recover x0 at zero terminal SNR; use 'v', 'x0' or 'edm'")
        require(sigma_data > 0, "sigma_data", "a positive number", sigma_data)
        require(clip_x0 is None or clip_x0 > 0, "clip_x0", "a positive number (|x0| bound) or null", clip_x0)
        require(isinstance(learned_variance, bool), "learned_variance", "true or false", learned_variance)
        self.sigma_data = sigma_data
        self.clip_x0 = clip_x0
        self.learned_variance = learned_variance
        require(isinstance(consistency, bool), "consistency", "true or false", consistency)
        if consistency and learned_variance:
            raise ValueError("consistency: a consistency model maps x_t to x0 in one step; it has no reverse-step "
                             "variance to learn (set learned_variance: false)")
        self.consistency = consistency
        # s_min: the level where f is the identity (a consistency model's boundary), the smallest trained one
        self.sigma_min = float(process.noise_level(torch.tensor(process.t_eps, dtype=torch.float64))) \
            if consistency else 0.0
        require(mixed_score is None or (isinstance(mixed_score, (int, float)) and not isinstance(mixed_score, bool)
                                        and 0 < mixed_score < 1), "mixed_score",
                "the initial mixing coefficient in (0, 1) (LSGM's alpha), or null", mixed_score)
        self.mixed_score = mixed_score
        if mixed_score is not None:
            if prediction != "eps" or learned_variance or consistency:
                raise ValueError("mixed_score: mixes the eps of N(0, I) with the network's eps; it needs prediction "
                                 "eps without learned variance or consistency")
            require(isinstance(mixed_shape, (list, tuple)) and len(mixed_shape) > 0 and
                    all(isinstance(k, int) and k >= 1 for k in mixed_shape), "mixed_shape",
                    "the shape of one example (positive integers)", mixed_shape)
            self.mix_logit = nn.Parameter(torch.full(tuple(mixed_shape), math.log(mixed_score / (1 - mixed_score))))

    @classmethod
    def from_function(cls, fn: Callable, process: NoiseProcess, prediction: str = "eps", **kwargs) -> "Denoiser":
        """Wrap a plain callable `fn(x_t, t)` (or `fn(x_t, t, cond)`) that returns a `prediction`-type output.

        It receives the process's own time t (float, per example; not the network time `process.net_time(t)` that a
        network is given, e.g. 1000 t on the score SDEs) for eps / x0 / v / score, and (c_in x_t, ln(sigma)/4) for
        'edm'; `cond` comes as a `Cond` (or None). Analytic models (a Gaussian mixture's exact denoiser) and other
        libraries' networks then sample with every sampler. The result is not saved with checkpoints: its config
        records the function only by name.
        """
        return cls(FunctionNet(fn), process, prediction, **kwargs)

    @property
    def latent_dim(self) -> Optional[int]:
        """The size of the latent z the network reads (a DDGAN generator; Xiao et al. 2022), else None."""
        return getattr(getattr(self.net, "embed", None), "latent_dim", None)

    def _coefficients(self, x_t: torch.Tensor, t, alpha=None, sigma=None):
        return time_coefficients(self.process, x_t, t, alpha, sigma)

    def net_outputs(self, x_t: torch.Tensor, t, cond: Any = None, *, alpha=None, sigma=None):
        """(the network's prediction in the coordinates of `self.prediction`, v or None) at (x_t, t)."""
        t, alpha, sigma = self._coefficients(x_t, t, alpha, sigma)
        c = t if getattr(self.net, "process_time", False) else self.process.net_time(t)
        x_in, c_noise = network_inputs(self.prediction, x_t, c, alpha, sigma, self.sigma_data)
        out = self.net(x_in, c_noise, Cond.of(cond))
        if self.mixed_score is not None:  # LSGM's mixed score: the Gaussian part plus the learned residual
            a = torch.sigmoid(self.mix_logit).to(out.dtype)
            gauss = bcast(sigma / (alpha**2 + sigma**2), x_t).to(out.dtype) * x_t
            out = (1 - a) * gauss + a * out
        if not self.learned_variance:
            return out, None
        if out.shape[1] != 2 * x_t.shape[1]:
            raise ValueError(f"learned_variance: the network gives {out.shape[1]} output channels; a model with "
                             f"learned variance needs {2 * x_t.shape[1]} (prediction and v)")
        out, v = out.chunk(2, dim=1)
        return out, (v + 1) / 2

    def net_output(self, x_t: torch.Tensor, t, cond: Any = None, *, alpha=None, sigma=None) -> torch.Tensor:
        """The network's prediction at (x_t, t), in the coordinates of `self.prediction` (v split off)."""
        return self.net_outputs(x_t, t, cond, alpha=alpha, sigma=sigma)[0]

    def target(self, x0, eps, x_t, t) -> torch.Tensor:
        """The output a perfect network would give for this (x0, eps): the regression target."""
        if self.consistency:
            raise ValueError("objective: a consistency model (consistency: true) is trained by objective consistency "
                             "or by 'denoisekit distill', not by regression on the noise")
        t, alpha, sigma = self._coefficients(x_t, t)
        return from_x0_eps(self.prediction, x0, eps, x_t, alpha, sigma, self.sigma_data)

    def forward(self, x_t: torch.Tensor, t, cond: Any = None, *, alpha=None, sigma=None, clip: bool = True) -> Prediction:
        """Prediction(x0, eps) at (x_t, t); samplers pass alpha(t), sigma(t) precomputed to skip the table look-ups.
        `clip=False` skips clip_x0 (classifier-free guidance clips after combining its branches)."""
        t, alpha, sigma = self._coefficients(x_t, t, alpha, sigma)
        out, v = self.net_outputs(x_t, t, cond, alpha=alpha, sigma=sigma)
        x0, eps = to_x0_eps(self.prediction, out, x_t, alpha, sigma, self.sigma_data)
        if self.consistency:
            a, s = bcast(alpha, x_t), bcast(sigma, x_t)
            x0 = consistency_x0(x0, x_t / a, s / a, self.sigma_min, self.sigma_data)
            _, eps = to_x0_eps("x0", x0, x_t, alpha, sigma)
        if clip and self.clip_x0 is not None:
            x0 = x0.clamp(-self.clip_x0, self.clip_x0)
            _, eps = to_x0_eps("x0", x0, x_t, alpha, sigma)
        return Prediction(x0=x0, eps=eps, v=v)


class FunctionNet(nn.Module):
    """A plain callable `fn(x, t)` or `fn(x, t, cond)` in the place of a network (see `Denoiser.from_function`)."""

    process_time = True  # given the process's time t, not the network time

    def __init__(self, fn: Callable):
        super().__init__()
        self.fn = fn
        try:
            self.takes_cond = len(inspect.signature(fn).parameters) >= 3
        except (TypeError, ValueError):  # builtins and C functions without a signature
            self.takes_cond = False

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Any = None) -> torch.Tensor:
        return self.fn(x, t, cond) if self.takes_cond else self.fn(x, t)

    def extra_repr(self) -> str:
        return getattr(self.fn, "__qualname__", type(self.fn).__name__)


CLD_PREDICTIONS = ("eps", "mixed")  # what a CLD network predicts: the velocity noise, or its residual (mixed score)
ALL_PREDICTIONS = PREDICTION_TYPES + tuple(p for p in CLD_PREDICTIONS if p not in PREDICTION_TYPES)  # --prediction


@configurable
class CLDDenoiser(nn.Module):
    """`model(u_t, t, cond) -> Prediction(x0, eps_v)` for critically-damped Langevin diffusion (Dockhorn et al. 2022).

    The network reads the state u = (x, v) and predicts the velocity noise eps_v of q(u_t | x_0), so that the velocity
    score is -ell_t eps_v (hybrid score matching, eq. 13); with prediction 'mixed' it predicts the residual to the
    Gaussian part, the eps_v of data N(0, I) (the mixed score, sec. 3.3). x0 = E[x0 | u_t] follows linearly from eps_v.
    """

    def __init__(self, net: nn.Module, process, prediction: str = "mixed"):
        super().__init__()
        if not isinstance(process, CLDProcess):
            raise ValueError(f"process: a CLD denoiser reads the state (x, v) of process cld, not "
                             f"{type(process).__name__}")
        require(prediction in CLD_PREDICTIONS, "prediction", f"one of {', '.join(CLD_PREDICTIONS)} for process cld "
                "(the velocity noise eps_v, or its residual to the Gaussian part: the mixed score)", prediction)
        self.net, self.process, self.prediction = net, process, prediction

    def net_output(self, u: torch.Tensor, t, cond: Any = None, **_) -> torch.Tensor:
        """eps_v at (u, t): the network's output, plus the Gaussian part for the mixed score."""
        t = torch.as_tensor(t, device=u.device)
        if t.ndim == 0:
            t = t.expand(u.shape[0])
        c = t if getattr(self.net, "process_time", False) else self.process.net_time(t)
        out = self.net(u, c, Cond.of(cond))
        if self.prediction == "mixed":
            out = out + self.process.gaussian_eps_v(u, t.double()).to(out.dtype)
        return out

    def forward(self, u: torch.Tensor, t, cond: Any = None, **_) -> Prediction:
        eps_v = self.net_output(u, t, cond)
        t = torch.as_tensor(t, dtype=torch.float64, device=u.device)
        return Prediction(x0=self.process.x0_from_eps_v(u, eps_v, t.expand(u.shape[0])), eps=eps_v)

    @classmethod
    def from_function(cls, fn: Callable, process, prediction: str = "eps") -> "CLDDenoiser":
        """Wrap a plain callable `fn(u, t)` or `fn(u, t, cond)` giving eps_v at the process's own time t."""
        return cls(FunctionNet(fn), process, prediction)
