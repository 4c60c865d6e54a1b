"""The analytic Gaussian mixture as an eps-prediction network (the library's mixture gives x0 directly)."""
from __future__ import annotations

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
