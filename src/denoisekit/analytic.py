"""Gaussian mixtures whose diffused posterior mean is closed-form: exact denoisers with no training (test oracles)."""
from __future__ import annotations

import torch

from .denoiser import Denoiser
from .process import NoiseProcess


class GaussianMixture:
    """p(x0) = sum_k w_k N(mu_k, diag(tau_k^2)) in float64; tau is (K,) (isotropic) or (K, D) (diagonal)."""

    def __init__(self, weights, means, stds):
        self.w = torch.as_tensor(weights, dtype=torch.float64)
        self.w = self.w / self.w.sum()
        self.mu = torch.as_tensor(means, dtype=torch.float64)
        tau = torch.as_tensor(stds, dtype=torch.float64)
        self.tau = tau if tau.ndim == 2 else tau[:, None].expand_as(self.mu)  # (K, D)
        if self.mu.ndim != 2 or self.tau.shape != self.mu.shape or len(self.w) != len(self.mu):
            raise ValueError("GaussianMixture: expected weights (K,), means (K, D) and stds (K,) or (K, D)")

    @property
    def dim(self) -> int:
        return self.mu.shape[1]

    @classmethod
    def random(cls, dim: int = 16, k: int = 8, seed: int = 0) -> "GaussianMixture":
        """K components with means ~ N(0, I/dim) (unit-scale data), stds in [0.05, 0.3] per dimension, Dirichlet weights."""
        g = torch.Generator().manual_seed(seed)
        means = torch.randn(k, dim, generator=g, dtype=torch.float64)
        stds = 0.05 + 0.25 * torch.rand(k, dim, generator=g, dtype=torch.float64)
        weights = -torch.rand(k, generator=g, dtype=torch.float64).log()  # Exp(1) draws: a flat Dirichlet
        return cls(weights, 0.5 * means, stds)

    @classmethod
    def fit_classes(cls, x: torch.Tensor, y: torch.Tensor, min_std: float = 0.05) -> "GaussianMixture":
        """One diagonal component per class: its share, mean and per-dimension std (floored at `min_std`)."""
        x = x.reshape(len(x), -1).double()
        classes = torch.unique(y)
        w = torch.stack([(y == c).double().mean() for c in classes])
        mu = torch.stack([x[y == c].mean(0) for c in classes])
        tau = torch.stack([x[y == c].std(0) for c in classes]).clamp(min=min_std)
        return cls(w, mu, tau)

    def sample(self, n: int, generator=None):
        """n draws and their component indices."""
        k = torch.multinomial(self.w, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.mu[k] + self.tau[k] * eps, k

    def posterior_mean(self, x_t: torch.Tensor, alpha, sigma) -> torch.Tensor:
        """E[x0 | x_t] for x_t = alpha x0 + sigma eps: Gaussian conditioning per component, Bayes over components."""
        shape = x_t.shape
        x = x_t.reshape(shape[0], -1).double()
        a = torch.as_tensor(alpha, dtype=torch.float64, device=x.device).reshape(-1, 1, 1)
        s = torch.as_tensor(sigma, dtype=torch.float64, device=x.device).reshape(-1, 1, 1)
        mu, tau2 = self.mu.to(x.device)[None], self.tau.to(x.device)[None] ** 2   # (1, K, D)
        var = a**2 * tau2 + s**2                                                    # (B|1, K, D)
        diff = x[:, None, :] - a * mu                                               # (B, K, D)
        logp = self.w.to(x.device).log()[None] - 0.5 * ((diff**2) / var + var.log()).sum(-1)
        r = torch.softmax(logp, dim=1)                                              # responsibilities (B, K)
        cond_mean = mu + (a * tau2 / var) * diff                                    # E[x0 | x_t, k]
        return (r[:, :, None] * cond_mean).sum(1).reshape(shape)

    def score(self, x_t: torch.Tensor, alpha, sigma) -> torch.Tensor:
        """grad log p_t(x_t) = (alpha E[x0 | x_t] - x_t) / sigma^2 (Tweedie's formula)."""
        a = torch.as_tensor(alpha, dtype=torch.float64).reshape(-1, *[1] * (x_t.ndim - 1))
        s = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1, *[1] * (x_t.ndim - 1))
        return (a * self.posterior_mean(x_t, alpha, sigma) - x_t.double()) / s**2

    def denoiser(self, process: NoiseProcess) -> Denoiser:
        """The exact denoiser of this mixture under `process` (an x0-prediction `Denoiser.from_function`)."""
        def x0(x_t, t):
            t = t.double()
            return self.posterior_mean(x_t, process.alpha(t), process.sigma(t)).to(x_t.dtype)
        return Denoiser.from_function(x0, process, prediction="x0")
