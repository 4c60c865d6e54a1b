"""Critically-damped Langevin diffusion (Dockhorn, Vahdat & Kreis, ICLR 2022): the data x coupled to a velocity v, the
state u = (x, v) stacked on the channel axis, with the closed-form mean and 2x2-per-dimension covariance of its linear
SDE (their app. B.1), the exact solution of its linear part over any step (SSCS's half-steps), and the velocity score
through the covariance's Cholesky factor (hybrid score matching)."""
from __future__ import annotations

import math

import torch

from ..config import configurable, require
from ..utils import Generator, append_dims, randn
from .base import Process


def _t(t) -> torch.Tensor:
    return torch.as_tensor(t, dtype=torch.float64)


@configurable
class CLDProcess(Process):
    """du = [[0, M^-1], [-1, -Gamma M^-1]] u beta dt + [[0, 0], [0, sqrt(2 Gamma beta)]] dw per data dimension (eq. 5),
    beta constant on t in [0, 1] (CLD-SGM's beta = 4, M^-1 = 4); critical damping Gamma^2 = 4 M unless critical is
    false; the initial velocity v0 ~ N(0, gamma M) marginalised (gamma = 0.04); the prior N(0, I) x N(0, M I).
    """

    family = "critically-damped Langevin (state (x, v))"
    t_min, t_max, grid_step = 0.0, 1.0, 0.0

    def __init__(self, beta: float = 4.0, mass_inv: float = 4.0, damping=None, gamma: float = 0.04,
                 critical: bool = True, t_eps: float = 1e-3):
        for name, v in (("beta", beta), ("mass_inv", mass_inv), ("gamma", gamma)):
            require(not isinstance(v, bool) and isinstance(v, (int, float)) and v > 0, name, "a positive number", v)
        require(isinstance(critical, bool), "critical", "true or false", critical)
        require(not isinstance(t_eps, bool) and isinstance(t_eps, (int, float)) and 0 < t_eps < 0.1, "t_eps",
                "a small positive time in (0, 0.1)", t_eps)
        crit = 2 / math.sqrt(mass_inv)  # Gamma^2 = 4 M
        if damping is None:
            damping = crit
        require(not isinstance(damping, bool) and isinstance(damping, (int, float)) and damping > 0, "damping",
                "a positive number (Gamma) or null (critical)", damping)
        if critical and not math.isclose(damping, crit, rel_tol=1e-9):
            raise ValueError(f"damping: critical damping (critical: true) needs Gamma^2 = 4 M = {4 / mass_inv:g}, "
                             f"i.e. Gamma = {crit:g} for mass_inv {mass_inv:g}; got {damping}; set damping: null, "
                             f"or critical: false")
        self.beta, self.mass_inv, self.damping, self.gamma = float(beta), float(mass_inv), float(damping), float(gamma)
        self.critical = bool(critical) or math.isclose(damping, crit, rel_tol=1e-9)
        self.t_eps = float(t_eps)
        self.M = 1 / self.mass_inv
        self.A = torch.tensor([[0.0, self.mass_inv], [-1.0, -self.damping * self.mass_inv]], dtype=torch.float64)

    # --- the state ---------------------------------------------------------------------------------------------------
    def net_time(self, t):
        return 1000 * t

    def from_net_time(self, c):
        return c / 1000

    def state_shape(self, data_shape) -> tuple:
        data_shape = tuple(data_shape)
        return (2 * data_shape[0], *data_shape[1:])

    def split(self, u: torch.Tensor):
        """(x, v): the two halves of a batch of states."""
        return u.chunk(2, dim=1)

    def data_part(self, state):
        return self.split(state)[0]

    def integral(self, t) -> torch.Tensor:
        """B(t) = int_0^t beta = beta t."""
        return self.beta * _t(t)

    # --- the linear dynamics over an integrated beta b ---------------------------------------------------------------
    def transition(self, b) -> torch.Tensor:
        """Phi(b) = exp(A b), (..., 2, 2): for critical damping e^{-2b/Gamma} (I + (A + 2/Gamma) b) (A's double
        eigenvalue -2/Gamma; the paper's eq. 31), else by the matrix exponential."""
        b = _t(b)
        if not self.critical:
            return torch.linalg.matrix_exp(self.A * b[..., None, None])
        G = self.damping
        e = torch.exp(-2 * b / G)
        row0 = torch.stack([1 + 2 * b / G, 4 * b / G**2], -1)
        row1 = torch.stack([-b, 1 - 2 * b / G], -1)
        return e[..., None, None] * torch.stack([row0, row1], -2)

    def noise_covariance(self, b) -> torch.Tensor:
        """Q(b) = int_0^b Phi(s) diag(0, 2 Gamma) Phi(s)^T ds, (..., 2, 2): the covariance the SDE adds from a fixed
        state; closed form for critical damping with y = 4b/Gamma (written with expm1 so small b keeps its digits),
        else Van Loan's block exponential (Van Loan 1978)."""
        b = _t(b)
        G = self.damping
        if self.critical:
            e, y = torch.exp(-4 * b / G), 4 * b / G
            qxx = -torch.expm1(-y) - e * (y + y**2 / 2)
            qxv = e * 4 * b**2 / G
            qvv = G**2 / 4 * -torch.expm1(-y) + e * (b * G - 2 * b**2)
            return torch.stack([torch.stack([qxx, qxv], -1), torch.stack([qxv, qvv], -1)], -2)
        D = torch.tensor([[0.0, 0.0], [0.0, 2 * G]], dtype=torch.float64)
        top = torch.cat([-self.A, D], 1)
        big = torch.cat([top, torch.cat([torch.zeros(2, 2, dtype=torch.float64), self.A.T], 1)], 0)
        E = torch.linalg.matrix_exp(big * b[..., None, None])
        phi = E[..., 2:, 2:].transpose(-1, -2)
        return phi @ E[..., :2, 2:]

    def covariance(self, t, var0x: float = 0.0, var0v=None) -> torch.Tensor:
        """Sigma_t = Phi Sigma_0 Phi^T + Q(B(t)) with Sigma_0 = diag(var0x, var0v) (var0v: gamma M, the marginalised
        initial velocity; var0x = 0 for a given x0), (..., 2, 2), float64."""
        var0v = self.gamma * self.M if var0v is None else var0v
        phi = self.transition(self.integral(t))
        s0 = torch.diag(torch.tensor([var0x, var0v], dtype=torch.float64))
        return phi @ s0 @ phi.transpose(-1, -2) + self.noise_covariance(self.integral(t))

    @staticmethod
    def cholesky(cov: torch.Tensor):
        """(L11, L21, L22) of a batch of 2x2 covariances: L11 = sqrt(S_xx), L21 = S_xv / L11, L22 = sqrt(S_vv - L21^2)."""
        l11 = cov[..., 0, 0].clamp(min=0).sqrt()
        l21 = torch.where(l11 > 0, cov[..., 0, 1] / l11.clamp(min=1e-300), torch.zeros_like(l11))
        l22 = (cov[..., 1, 1] - l21**2).clamp(min=0).sqrt()
        return l11, l21, l22

    def coefficients(self, t):
        """(mean_x, mean_v, L11, L21, L22), each (B,) float64: q(u_t | x_0) = N((mean_x x0, mean_v x0), L L^T) per
        dimension, with v0 marginalised (Sigma_0 = diag(0, gamma M))."""
        t = _t(t)
        phi = self.transition(self.integral(t))
        return (phi[..., 0, 0], phi[..., 1, 0], *self.cholesky(self.covariance(t)))

    def noise_scale(self, t) -> torch.Tensor:
        """ell_t = 1 / L22: the velocity score of q(u_t | x_0) is -ell_t eps_v (HSM, the paper's eq. 13)."""
        return 1 / self.coefficients(t)[4]

    def q_sample(self, x0: torch.Tensor, t, eps: torch.Tensor) -> torch.Tensor:
        """u_t = (mean_x x0 + L11 eps_x, mean_v x0 + L21 eps_x + L22 eps_v): q(u_t | x_0) through the Cholesky factor."""
        if eps.shape[1] != 2 * x0.shape[1] or eps.shape[2:] != x0.shape[2:]:
            raise ValueError(f"eps: CLD's noise has the state's shape (2 x the data's channels, {2 * x0.shape[1]}); "
                             f"got {tuple(eps.shape)} for data {tuple(x0.shape)}")
        t = _t(t).to(x0.device)
        if t.ndim == 0:
            t = t.expand(x0.shape[0])
        mx, mv, l11, l21, l22 = (append_dims(c, x0.ndim).to(x0.dtype) for c in self.coefficients(t))
        ex, ev = eps.chunk(2, dim=1)
        return torch.cat([mx * x0 + l11 * ex, mv * x0 + l21 * ex + l22 * ev], 1)

    def perturb(self, x0, t, generator: Generator = None):
        shape = (x0.shape[0], *self.state_shape(x0.shape[1:]))
        return self.q_sample(x0, t, randn(shape, generator, device=x0.device, dtype=x0.dtype))

    def x0_from_eps_v(self, u: torch.Tensor, eps_v: torch.Tensor, t) -> torch.Tensor:
        """E[x0 | u_t] from E[eps_v | u_t]: x_t = m_x x0 + L11 eps_x and v_t = m_v x0 + L21 eps_x + L22 eps_v are linear,
        so x0 = (v - L22 eps_v - L21 x / L11) / (m_v - m_x L21 / L11) (CLD-SGM's x0 prediction)."""
        x, v = self.split(u)
        mx, mv, l11, l21, l22 = (append_dims(c, u.ndim).to(u.dtype) for c in self.coefficients(t))
        r = l21 / l11
        return (v - l22 * eps_v - r * x) / (mv - mx * r)

    def gaussian_eps_v(self, u: torch.Tensor, t) -> torch.Tensor:
        """eps_v = -L22 score_v of the marginal were the data N(0, I): the Gaussian part of the mixed score (the
        paper's sec. 3.3; the network adds the residual). score_v = -(Sigma^-1 u)_v with Sigma = Sigma_t(var0x = 1)."""
        x, v = self.split(u)
        cov = self.covariance(t, var0x=1.0)
        det = cov[..., 0, 0] * cov[..., 1, 1] - cov[..., 0, 1] ** 2
        l22 = self.coefficients(t)[4]
        cx, cv = (append_dims(c, u.ndim).to(u.dtype) for c in (-cov[..., 0, 1] / det * l22, cov[..., 0, 0] / det * l22))
        return cx * x + cv * v

    def linear_step(self, u: torch.Tensor, b, eps: torch.Tensor, reverse: bool = False) -> torch.Tensor:
        """The exact solution over integrated beta b of the linear part: forward du = A u beta dt + noise, or
        (reverse) the reverse-time Ornstein-Uhlenbeck part of SSCS (Dockhorn et al., app. D.2), which is the forward one
        conjugated by S = diag(-1, 1): mean S Phi(b) S u, covariance S Q(b) S."""
        phi, q = self.transition(b), self.noise_covariance(b)
        sign = -1.0 if reverse else 1.0
        l11, l21, l22 = (float(c) for c in self.cholesky(q))
        x, v = self.split(u)
        ex, ev = eps.chunk(2, dim=1)
        p = phi.tolist()
        x_new = p[0][0] * x + sign * p[0][1] * v + l11 * ex
        v_new = sign * p[1][0] * x + p[1][1] * v + sign * l21 * ex + l22 * ev
        return torch.cat([x_new, v_new], 1)

    # --- prior and SDE ---------------------------------------------------------------------------------------------
    def prior_sample(self, shape, generator: Generator = None, *, device=None, dtype=torch.float32):
        """(x, v) ~ N(0, I) x N(0, M I): one draw of the state, the velocity half scaled by sqrt(M)."""
        u = randn(shape, generator, device=device, dtype=dtype)
        x, v = self.split(u)
        return torch.cat([x, v * math.sqrt(self.M)], 1)

    def prior_log_prob(self, u: torch.Tensor) -> torch.Tensor:
        x, v = self.split(u)
        d = x[0].numel()
        sq = x.reshape(len(x), -1).pow(2).sum(1) + v.reshape(len(v), -1).pow(2).sum(1) / self.M
        return -0.5 * sq - d * math.log(2 * math.pi) - 0.5 * d * math.log(self.M)

    def sde(self, t):
        """(F, G G^T) per data dimension, each (..., 2, 2): F = beta A, G G^T = diag(0, 2 Gamma beta)."""
        t = _t(t)
        ones = torch.ones_like(t)[..., None, None]
        gg = torch.tensor([[0.0, 0.0], [0.0, 2 * self.damping * self.beta]], dtype=torch.float64)
        return self.beta * self.A * ones, gg * ones

    def sampling_defaults(self) -> dict:
        return {"sampler": "sscs", "schedule": "uniform"}
