"""The noisy classifier p_phi(y | x_t, t) of classifier guidance (Dhariwal & Nichol 2021, sec. 4)."""
from __future__ import annotations

import torch
from torch import nn

from ..config import configurable
from ..prediction import network_inputs


@configurable
class NoisyClassifier(nn.Module):
    """p_phi(y | x_t, t) for a noise process: a classifier network fed what an eps-prediction network is fed."""

    def __init__(self, net: nn.Module, process):
        super().__init__()
        self.net, self.process = net, process

    def forward(self, x_t: torch.Tensor, t) -> torch.Tensor:
        """Logits (B, num_classes)."""
        t = torch.as_tensor(t, device=x_t.device)
        t = t.expand(x_t.shape[0]) if t.ndim == 0 else t.reshape(-1)
        x_in, c_noise = network_inputs("eps", x_t, t, None, None)
        return self.net(x_in, c_noise)

    def log_prob(self, x_t: torch.Tensor, t, y: torch.Tensor) -> torch.Tensor:
        """log p_phi(y | x_t, t), one value per example."""
        return torch.log_softmax(self(x_t, t).float(), dim=1).gather(1, y.reshape(-1, 1).long()).squeeze(1)
