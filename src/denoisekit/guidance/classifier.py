"""The noisy classifier p_phi(y | x_t, t) of classifier guidance (Dhariwal & Nichol 2021, sec. 4)."""
from __future__ import annotations

import torch
from torch import nn

from ..config import configurable
from ..prediction import network_inputs


def _inputs(x_t: torch.Tensor, t):
    """(x_in, c_noise) of an eps-prediction network at (x_t, t), t a scalar or one per example."""
    t = torch.as_tensor(t, device=x_t.device)
    t = t.expand(x_t.shape[0]) if t.ndim == 0 else t.reshape(-1)
    return network_inputs("eps", x_t, t, None, None)


@configurable
class NoisyClassifier(nn.Module):
    """p_phi(y | x_t, t) for a noise process: a classifier network fed what an eps-prediction network is fed."""

    def __init__(self, net: nn.Module, process):
        super().__init__()
        self.net, self.process = net, process

    def forward(self, x_t: torch.Tensor, t) -> torch.Tensor:
        """Logits (B, num_classes)."""
        return self.net(*_inputs(x_t, t))

    def log_prob(self, x_t: torch.Tensor, t, y: torch.Tensor) -> torch.Tensor:
        """log p_phi(y | x_t, t), one value per example."""
        return torch.log_softmax(self(x_t, t).float(), dim=1).gather(1, y.reshape(-1, 1).long()).squeeze(1)


@configurable
class NoisyCLIP(nn.Module):
    """GLIDE's noised CLIP for a noise process (Nichol et al. 2022, sec. 2.4): f(x_t, t) fed what an eps-prediction
    network is fed, g(c) of a caption's tokens; CLIP guidance follows the gradient of their logit."""

    def __init__(self, net: nn.Module, process):
        super().__init__()
        self.net, self.process = net, process

    def image(self, x_t: torch.Tensor, t) -> torch.Tensor:
        """f(x_t, t): unit vectors (B, embed_dim)."""
        return self.net.image(*_inputs(x_t, t))

    def log_prob(self, x_t: torch.Tensor, t, tokens: torch.Tensor) -> torch.Tensor:
        """The contrastive logit s f(x_t, t) . g(c) of each example's own caption (s = exp(logit scale)): GLIDE's
        guidance signal, on the scale of a classifier's log-probability up to a constant in x."""
        return self.net.scale * (self.image(x_t, t) * self.net.text(tokens)).sum(-1)
