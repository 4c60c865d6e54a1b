"""The analytic Gaussian mixture as an eps-prediction network (the library's mixture gives x0 directly)."""
from __future__ import annotations

import math

import torch
from torch import nn

from denoisekit.analytic import GaussianMixture  # noqa: F401  (re-exported for the tests)


class OracleEpsNet(nn.Module):
    """The exact eps-prediction network of a mixture under a process: eps = (x_t - alpha E[x0|x_t]) / sigma."""

    def __init__(self, gmm: GaussianMixture, process):
        super().__init__()
        self.gmm, self.process = gmm, process
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x, c_noise, cond=None):
        t = c_noise.double()
        alpha, sigma = self.process.alpha(t), self.process.sigma(t)
        x0 = self.gmm.posterior_mean(x, alpha, sigma)
        return ((x.double() - alpha[:, None] * x0) / sigma[:, None]).to(x.dtype)


def mixture_weights(gmm: GaussianMixture, x: torch.Tensor) -> torch.Tensor:
    """The fraction of samples x assigned (by the clean posterior) to each component."""
    k = torch.argmax(gmm.log_class_posterior(x, 1.0, 1e-3), dim=1)
    return torch.bincount(k, minlength=len(gmm.w)).double() / len(x)


def assert_reproduces_mixture(gmm: GaussianMixture, x: torch.Tensor, tv: float = 0.04, label=None) -> None:
    """Component weights within total variation `tv`, and each component's mean, from the samples assigned to it,
    within twice its standard error (+ 0.03)."""
    assert 0.5 * float((mixture_weights(gmm, x) - gmm.w).abs().sum()) < tv, label
    k = torch.argmax(gmm.log_class_posterior(x, 1.0, 1e-3), dim=1)
    for j in range(len(gmm.w)):
        se = float(gmm.tau[j].norm()) / math.sqrt(int((k == j).sum()))
        assert float((x[k == j].mean(0) - gmm.mu[j]).norm()) < 2 * se + 0.03, (j, label)

