"""The denoiser: a network, a noise process and a prediction type, answering (x0, eps) for any x_t, t."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn

from .config import configurable
from .prediction import check_prediction, from_x0_eps, network_inputs, to_x0_eps
from .process import NoiseProcess


@dataclass
class Prediction:
    """What a denoiser predicts at (x_t, t): the clean data and the noise."""
    x0: torch.Tensor
    eps: torch.Tensor


@configurable
class Denoiser(nn.Module):
    """`model(x_t, t, cond) -> Prediction(x0, eps)` for a network trained with any prediction type.

    `clip_x0` clamps the predicted x0 to [-clip_x0, clip_x0] (eps is recomputed to match).
    """

    def __init__(self, net: nn.Module, process: NoiseProcess, prediction: str = "eps",
                 sigma_data: float = 0.5, clip_x0: Optional[float] = None):
        super().__init__()
        self.net = net
        self.process = process
        self.prediction = check_prediction(prediction)
        if getattr(process, "zero_terminal_snr", False) and prediction in ("eps", "score"):
            raise ValueError(f"prediction: {prediction!r} cannot recover x0 at zero terminal SNR; use 'v', 'x0' or 'edm'")
        self.sigma_data = sigma_data
        self.clip_x0 = clip_x0

    def _coefficients(self, x_t: torch.Tensor, t):
        t = torch.as_tensor(t, dtype=torch.float64, device=x_t.device)
        if t.ndim == 0:
            t = t.expand(x_t.shape[0])
        return t, self.process.alpha(t), self.process.sigma(t)

    def net_output(self, x_t: torch.Tensor, t, cond: Any = None) -> torch.Tensor:
        """The raw network output at (x_t, t), in the coordinates of `self.prediction`."""
        t, alpha, sigma = self._coefficients(x_t, t)
        x_in, c_noise = network_inputs(self.prediction, x_t, t, alpha, sigma, self.sigma_data)
        return self.net(x_in, c_noise, cond)

    def target(self, x0, eps, x_t, t) -> torch.Tensor:
        """The output a perfect network would give for this (x0, eps): the regression target."""
        t, alpha, sigma = self._coefficients(x_t, t)
        return from_x0_eps(self.prediction, x0, eps, x_t, alpha, sigma, self.sigma_data)

    def forward(self, x_t: torch.Tensor, t, cond: Any = None) -> Prediction:
        t, alpha, sigma = self._coefficients(x_t, t)
        out = self.net_output(x_t, t, cond)
        x0, eps = to_x0_eps(self.prediction, out, x_t, alpha, sigma, self.sigma_data)
        if self.clip_x0 is not None:
            x0 = x0.clamp(-self.clip_x0, self.clip_x0)
            _, eps = to_x0_eps("x0", x0, x_t, alpha, sigma)
        return Prediction(x0=x0, eps=eps)
