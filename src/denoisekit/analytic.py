"""Gaussian mixtures whose diffused posterior mean is closed-form: exact denoisers with no training (test oracles)."""
from __future__ import annotations

import math

import torch

from .denoiser import CLDDenoiser, Denoiser
from .conditioning import Cond
from .processes import NoiseProcess


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

    def _diffused(self, x_t: torch.Tensor, alpha, sigma):
        """Per component k of p_t = sum_k w_k N(alpha mu_k, alpha^2 tau_k^2 + sigma^2): log w_k N(x_t), and E[x0 | x_t, k]."""
        x = x_t.reshape(x_t.shape[0], -1).double()
        a = torch.as_tensor(alpha, dtype=torch.float64, device=x.device).reshape(-1, 1, 1)
        s = torch.as_tensor(sigma, dtype=torch.float64, device=x.device).reshape(-1, 1, 1)
        mu, tau2 = self.mu.to(x.device)[None], self.tau.to(x.device)[None] ** 2   # (1, K, D)
        var = a**2 * tau2 + s**2                                                    # (B|1, K, D)
        diff = x[:, None, :] - a * mu                                               # (B, K, D)
        logp = self.w.to(x.device).log()[None] - 0.5 * ((diff**2) / var + var.log() + math.log(2 * math.pi)).sum(-1)
        return logp, mu + (a * tau2 / var) * diff                                   # (B, K), (B, K, D)

    def log_class_posterior(self, x_t: torch.Tensor, alpha, sigma) -> torch.Tensor:
        """log p(k | x_t) (B, K): the component posterior of the diffused mixture, closed-form."""
        logp, _ = self._diffused(x_t, alpha, sigma)
        return torch.log_softmax(logp, dim=1)

    def log_density(self, x_t: torch.Tensor, alpha=1.0, sigma=0.0) -> torch.Tensor:
        """log p_t(x_t) (B,) of the diffused mixture (alpha = 1, sigma = 0: the data density)."""
        logp, _ = self._diffused(x_t, alpha, sigma)
        return torch.logsumexp(logp, dim=1)

    def posterior_mean(self, x_t: torch.Tensor, alpha, sigma, labels=None) -> torch.Tensor:
        """E[x0 | x_t] for x_t = alpha x0 + sigma eps: Gaussian conditioning per component, Bayes over components;
        with `labels` (B,), E[x0 | x_t, k = label] for labels >= 0 (a label < 0 means the whole mixture)."""
        logp, cond_mean = self._diffused(x_t, alpha, sigma)
        if labels is not None:
            labels = torch.as_tensor(labels, device=logp.device).reshape(-1).long()
            onehot = torch.nn.functional.one_hot(labels.clamp(min=0), len(self.w)).bool()
            keep = onehot | (labels < 0)[:, None]
            logp = torch.where(keep, logp, torch.full_like(logp, -math.inf))
        r = torch.softmax(logp, dim=1)                                              # responsibilities (B, K)
        return (r[:, :, None] * cond_mean).sum(1).reshape(x_t.shape)

    def score(self, x_t: torch.Tensor, alpha, sigma) -> torch.Tensor:
        """grad log p_t(x_t) = (alpha E[x0 | x_t] - x_t) / sigma^2 (Tweedie's formula)."""
        a = torch.as_tensor(alpha, dtype=torch.float64).reshape(-1, *[1] * (x_t.ndim - 1))
        s = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1, *[1] * (x_t.ndim - 1))
        return (a * self.posterior_mean(x_t, alpha, sigma) - x_t.double()) / s**2

    def denoiser(self, process: NoiseProcess, conditional: bool = False) -> Denoiser:
        """The exact denoiser of this mixture under `process` (an x0-prediction `Denoiser.from_function`); with
        `conditional`, cond = component labels gives p(x | k) (label -1: the whole mixture), as a class-conditional
        model trained with label dropout would."""
        def x0(x_t, t, cond=None):
            t = t.double()
            labels = Cond.of(cond).label if conditional and cond is not None else None
            return self.posterior_mean(x_t, process.alpha(t), process.sigma(t), labels).to(x_t.dtype)
        return Denoiser.from_function(x0, process, prediction="x0")

    def cld_denoiser(self, process) -> "CLDDenoiser":
        """The exact CLD denoiser of this mixture (Dockhorn et al. 2022): eps_v = -L22 score_v, with per component k and
        dimension the linear-Gaussian marginal u ~ N(Phi[:, 0] mu_k, C_k = Phi diag(tau_k^2, gamma M) Phi^T + Q) and
        score_v = sum_k r_k(u) (-C_k^-1 (u - m_k))_v, r_k the components' posterior weights."""
        def eps_v(u, t):
            x, v = (h.reshape(len(u), -1).double() for h in process.split(u))
            t = t.double()
            b = process.integral(t)
            phi, q = process.transition(b), process.noise_covariance(b)           # (B, 2, 2)
            col = lambda m, i, j: m[:, i, j][:, None, None]  # noqa: E731
            tau2, s0v = self.tau.to(u.device)[None] ** 2, process.gamma * process.M  # (1, K, D)
            cxx = col(phi, 0, 0) ** 2 * tau2 + col(phi, 0, 1) ** 2 * s0v + col(q, 0, 0)
            cxv = col(phi, 0, 0) * col(phi, 1, 0) * tau2 + col(phi, 0, 1) * col(phi, 1, 1) * s0v + col(q, 0, 1)
            cvv = col(phi, 1, 0) ** 2 * tau2 + col(phi, 1, 1) ** 2 * s0v + col(q, 1, 1)
            mu = self.mu.to(u.device)[None]
            dx, dv = x[:, None] - col(phi, 0, 0) * mu, v[:, None] - col(phi, 1, 0) * mu  # (B, K, D)
            det = cxx * cvv - cxv**2
            logp = self.w.to(u.device).log()[None] - 0.5 * ((cvv * dx**2 - 2 * cxv * dx * dv + cxx * dv**2) / det
                                                            + det.log()).sum(-1)
            r = torch.softmax(logp, dim=1)[..., None]
            score_v = (r * (cxv * dx - cxx * dv) / det).sum(1)
            l22 = process.coefficients(t)[4][:, None]
            return (-l22 * score_v).reshape(process.split(u)[1].shape).to(u.dtype)
        return CLDDenoiser.from_function(eps_v, process, "eps")

    def classifier(self, process: NoiseProcess):
        """log p(y = k | x_t, t), the exact noisy classifier, for ClassifierGuidance."""
        def log_prob(x_t, t, y):
            t = torch.as_tensor(t, dtype=torch.float64, device=x_t.device)
            lp = self.log_class_posterior(x_t, process.alpha(t), process.sigma(t))
            return lp.gather(1, y.reshape(-1, 1).long()).squeeze(1).to(x_t.dtype)
        return log_prob
