"""Score-matching losses (Hyvarinen 2005; Song et al. 2019; Vincent 2011; Song & Ermon 2019) as small callables
`loss(denoiser, x0, cond, generator) -> per-example loss`, for a model's score s = grad log p_t = -eps / sigma.

Each draws a noise level as the process's training does (a rung of a ladder uniformly, t ~ U[t_eps, 1] for a
continuous process) or takes the one fixed level `sigma`, perturbs x_0 to x_t ~ q(x_t | x_0), and scores s(x_t) with
the weight lambda = sigma_t^2 (Song & Ermon 2019, eq. 6): in the scaled score u = sigma_t s = -eps_hat every level's
term is O(1). Values are per dimension, like L_simple.
"""
from __future__ import annotations

from typing import Literal, Optional

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..config import configurable, require
from ..divergence import Probe, divergence, probe
from ..utils import Generator, append_dims
from .simple import SimpleLoss, noised

Trace = Literal["auto", "exact", "hutchinson"]
EXACT_TRACE_MAX_DIM = 16  # 'auto' traces exactly up to this many dimensions (one pass of the batch repeated d times)


class ScoreMatching:
    """What the three objectives share: the noise level, x_t, and the scaled score u = sigma_t s_theta(x_t, t)."""

    def __init__(self, sigma: Optional[float], p_uncond: float):
        require(sigma is None or (isinstance(sigma, (int, float)) and not isinstance(sigma, bool) and sigma > 0),
                "sigma", "a positive noise level sigma/alpha, or null to draw levels as the process trains", sigma)
        require(0 <= p_uncond < 1, "p_uncond", "a probability in [0, 1)", p_uncond)
        self.sigma, self.p_uncond = sigma, p_uncond

    def sample_t(self, process, n: int, generator: Generator = None, device=None) -> torch.Tensor:
        """The fixed level's time, or times drawn as L_simple draws them (the ladder's rungs uniformly)."""
        if self.sigma is not None:
            return process.t_from_noise_level(torch.tensor(float(self.sigma), dtype=torch.float64)).expand(n).to(device)
        return SimpleLoss("uniform").sample_t(process, n, generator, device)

    def __call__(self, denoiser, x0: torch.Tensor, cond=None, generator: Generator = None) -> torch.Tensor:
        process = denoiser.process
        t = self.sample_t(process, x0.shape[0], generator, x0.device)
        eps, x_t, cond = noised(process, x0, t, cond, self.p_uncond, generator)
        sigma = append_dims(process.sigma(t), x0.ndim).to(x0.dtype)

        def scaled_score(x: torch.Tensor) -> torch.Tensor:
            """u = sigma_t s_theta(x, t) = -eps_hat, for x a multiple k of the batch (the exact trace repeats it)."""
            k = x.shape[0] // x0.shape[0]
            return -denoiser(x, t.repeat(k), None if cond is None else cond.repeat(k), clip=False).eps

        if not getattr(self, "double_backward", False):
            return self.objective(scaled_score, x_t.detach(), eps, sigma, generator).float()
        # training differentiates tr(grad s): attention must run on the math kernel, whose backward is itself
        # differentiable (the fused CPU/CUDA kernels' backward is not); the kernel is chosen as the graph is built
        with sdpa_kernel(SDPBackend.MATH):
            return self.objective(scaled_score, x_t.detach(), eps, sigma, generator).float()

    def objective(self, scaled_score, x_t, eps, sigma, generator) -> torch.Tensor:
        raise NotImplementedError


def per_dim(v: torch.Tensor) -> torch.Tensor:
    """Per example: the sum over dimensions divided by their number."""
    return v.reshape(v.shape[0], -1).mean(1)


@configurable
class DSMLoss(ScoreMatching):
    """Denoising score matching (Vincent 2011; Song & Ermon 2019, eq. 5-6): 1/2 lambda |s(x_t) + (x_t - alpha x_0) /
    sigma^2|^2 = 1/2 |u + eps|^2; its minimiser at each level is the score of the smoothed data, grad log p_t.
    Over a ladder with lambda = sigma^2 this is NCSN's loss (and half of L_simple for an eps-model)."""

    def __init__(self, sigma: Optional[float] = None, p_uncond: float = 0.0):
        super().__init__(sigma, p_uncond)

    def objective(self, scaled_score, x_t, eps, sigma, generator):
        return 0.5 * per_dim((scaled_score(x_t) + eps) ** 2)


@configurable
class ESMLoss(ScoreMatching):
    """Explicit score matching (Hyvarinen 2005, eq. 4) of p_t: lambda (tr(grad s) + 1/2 |s|^2) = sigma tr(grad u) +
    1/2 |u|^2, equal to 1/2 lambda E|s - grad log p_t|^2 up to a constant, with no access to grad log p_t.

    trace 'exact' (d derivative passes folded into one batch), 'hutchinson' (`probes` Rademacher probes,
    z^T (grad u) z; Hutchinson 1989) or 'auto': exact up to 16 dimensions.
    """

    double_backward = True  # training differentiates tr(grad s)

    def __init__(self, sigma: Optional[float] = None, trace: Trace = "auto", probes: int = 1, p_uncond: float = 0.0):
        super().__init__(sigma, p_uncond)
        require(trace in ("auto", "exact", "hutchinson"), "trace", "'auto', 'exact' or 'hutchinson'", trace)
        require(isinstance(probes, int) and not isinstance(probes, bool) and probes >= 1, "probes",
                "a positive integer", probes)
        self.trace, self.probes = trace, probes
        self.hutchinson = SSMLoss(sigma, probes, True, "rademacher")  # Hutchinson's ESM is SSM-VR with +-1 probes

    def objective(self, scaled_score, x_t, eps, sigma, generator):
        d = x_t[0].numel()
        if self.trace == "exact" or (self.trace == "auto" and d <= EXACT_TRACE_MAX_DIM):
            u, tr = divergence(scaled_score, x_t, create_graph=True)
            return per_dim(0.5 * u**2) + per_dim(sigma) * tr / d
        return self.hutchinson.objective(scaled_score, x_t, eps, sigma, generator)


@configurable
class SSMLoss(ScoreMatching):
    """Sliced score matching (Song et al. 2019, eq. 7-8): lambda (v^T (grad s) v + 1/2 (v^T s)^2) averaged over
    `projections` random directions v (E[v v^T] = I); `variance_reduced` replaces 1/2 (v^T s)^2 by its expectation
    1/2 |s|^2 (SSM-VR, eq. 9). Unbiased for explicit score matching, at one extra backward per projection."""

    double_backward = True

    def __init__(self, sigma: Optional[float] = None, projections: int = 1, variance_reduced: bool = True,
                 distribution: Probe = "gaussian", p_uncond: float = 0.0):
        super().__init__(sigma, p_uncond)
        require(isinstance(projections, int) and not isinstance(projections, bool) and projections >= 1,
                "projections", "a positive integer", projections)
        require(isinstance(variance_reduced, bool), "variance_reduced", "true or false", variance_reduced)
        require(distribution in ("gaussian", "rademacher"), "distribution", "'gaussian' or 'rademacher'",
                distribution)
        self.projections, self.variance_reduced, self.distribution = projections, variance_reduced, distribution

    def objective(self, scaled_score, x_t, eps, sigma, generator):
        d = x_t[0].numel()
        total = 0.0
        for _ in range(self.projections):
            v = probe(x_t.shape, self.distribution, generator, x_t.device, x_t.dtype)
            u, vjv = divergence(scaled_score, x_t, v, create_graph=True)  # v^T (grad u) v
            if self.variance_reduced:
                half_norm = per_dim(0.5 * u**2)
            else:
                half_norm = 0.5 * (v * u).reshape(len(u), -1).sum(1) ** 2 / d
            total = total + half_norm + per_dim(sigma) * vjv / d
        return total / self.projections
