"""An analytic Gaussian mixture: its diffused score and posterior mean are closed-form, a model with no training."""
from __future__ import annotations

import torch
from torch import nn


class GaussianMixture:
    """p(x0) = sum_k w_k N(mu_k, tau_k^2 I) in float64."""

    def __init__(self, weights, means, stds):
        self.w = torch.as_tensor(weights, dtype=torch.float64)
        self.mu = torch.as_tensor(means, dtype=torch.float64)
        self.tau = torch.as_tensor(stds, dtype=torch.float64)

    def sample(self, n, generator=None):
        k = torch.multinomial(self.w, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.mu.shape[1], generator=generator, dtype=torch.float64)
        return self.mu[k] + self.tau[k, None] * eps, k

    def posterior_mean(self, x_t, alpha, sigma):
        """E[x0 | x_t] for x_t = alpha x0 + sigma eps (Gaussian conditioning per component, Bayes over components)."""
        x_t = x_t.double()
        a, s = alpha.double()[:, None], sigma.double()[:, None]
        var = a**2 * self.tau[None] ** 2 + s**2                                  # (B, K)
        d = x_t.shape[1]
        diff = x_t[:, None, :] - a[:, :, None] * self.mu[None]                    # (B, K, D)
        logp = self.w.log()[None] - 0.5 * (diff**2).sum(-1) / var - 0.5 * d * var.log()
        r = torch.softmax(logp, dim=1)                                            # responsibilities
        gain = (a * self.tau[None] ** 2 / var)[:, :, None]
        cond_mean = self.mu[None] + gain * diff                                   # E[x0 | x_t, k]
        return (r[:, :, None] * cond_mean).sum(1)

    def score(self, x_t, alpha, sigma):
        """grad log p_t(x_t) = (alpha E[x0|x_t] - x_t) / sigma^2 (Tweedie)."""
        x0 = self.posterior_mean(x_t, alpha, sigma)
        return (alpha.double()[:, None] * x0 - x_t.double()) / sigma.double()[:, None] ** 2


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
