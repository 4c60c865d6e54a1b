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


def cld_oracle(gmm: GaussianMixture, process):
    """The exact velocity noise eps_v = -L22 score_v of a mixture diffused by CLD, as `fn(u, t)` for
    `CLDDenoiser.from_function`: per component k and dimension, u ~ N(Phi[:, 0] mu_k, Phi diag(tau_k^2, gamma M) Phi^T
    + Q) (the linear-Gaussian marginal), and score_v = sum_k r_k(u) (-C_k^-1 (u - m_k))_v."""

    def fn(u, t):
        x, v = (h.reshape(len(u), -1).double() for h in u.chunk(2, dim=1))
        t = t.double()
        phi = process.transition(process.integral(t))                       # (B, 2, 2)
        q = process.noise_covariance(process.integral(t))                   # (B, 2, 2)
        a, c = phi[:, 0, 0][:, None, None], phi[:, 1, 0][:, None, None]       # mean coefficients of x0
        pxv, pvv = phi[:, 0, 1][:, None, None], phi[:, 1, 1][:, None, None]
        tau2, s0v = gmm.tau[None] ** 2, process.gamma * process.M            # (1, K, D)
        cxx = a**2 * tau2 + pxv**2 * s0v + q[:, 0, 0][:, None, None]
        cxv = a * c * tau2 + pxv * pvv * s0v + q[:, 0, 1][:, None, None]
        cvv = c**2 * tau2 + pvv**2 * s0v + q[:, 1, 1][:, None, None]
        dx, dv = x[:, None] - a * gmm.mu[None], v[:, None] - c * gmm.mu[None]   # (B, K, D)
        det = cxx * cvv - cxv**2
        quad = (cvv * dx**2 - 2 * cxv * dx * dv + cxx * dv**2) / det
        logp = gmm.w.log()[None] - 0.5 * (quad + det.log()).sum(-1)
        r = torch.softmax(logp, dim=1)[..., None]
        score_v = (r * -(-cxv * dx + cxx * dv) / det).sum(1)
        l22 = process.coefficients(t)[4][:, None]
        return (-l22 * score_v).reshape(u.chunk(2, dim=1)[1].shape).to(u.dtype)

    return fn
