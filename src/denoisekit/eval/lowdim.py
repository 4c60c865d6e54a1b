"""Distances for low-dimensional samples (2-D toys, Gaussian mixtures): sliced Wasserstein and MMD."""
from __future__ import annotations

from typing import Optional, Sequence

import torch


def _cpu64(x) -> torch.Tensor:
    return torch.as_tensor(x).detach().cpu().double()


def wasserstein_1d_squared(pa: torch.Tensor, pb: torch.Tensor) -> torch.Tensor:
    """W_2^2 between 1-D empirical measures, column by column: the integral over u in (0, 1] of
    (F_a^-1(u) - F_b^-1(u))^2, exact for any two sample sizes (the quantile functions are step functions)."""
    pa, pb = pa.sort(0).values, pb.sort(0).values
    n, m = len(pa), len(pb)
    levels = torch.cat([torch.arange(1, n + 1, dtype=torch.float64) / n,
                        torch.arange(1, m + 1, dtype=torch.float64) / m]).unique()
    lower = torch.cat([levels.new_zeros(1), levels[:-1]])
    mid, width = (lower + levels) / 2, levels - lower
    ia = (mid * n).floor().long().clamp(max=n - 1)
    ib = (mid * m).floor().long().clamp(max=m - 1)
    return (width[:, None] * (pa[ia] - pb[ib]).square()).sum(0)


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, projections: int = 256, seed: int = 0) -> float:
    """SW_2 (Bonneel et al. 2015): sqrt of the mean over random unit directions of W_2^2 of the 1-D projections."""
    a, b = _cpu64(a), _cpu64(b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"sliced_wasserstein: expected two (N, D) arrays of the same D, "
                         f"got {tuple(a.shape)} and {tuple(b.shape)}")
    theta = torch.randn(a.shape[1], projections, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    theta = theta / theta.norm(dim=0)
    return float(wasserstein_1d_squared(a @ theta, b @ theta).mean().sqrt())


def median_bandwidth(a: torch.Tensor, b: torch.Tensor) -> float:
    """The median pairwise distance of the pooled samples, the usual RBF bandwidth heuristic."""
    pooled = torch.cat([a[:1000], b[:1000]]).double()
    d = torch.pdist(pooled)
    return float(d.median())


def mmd(a: torch.Tensor, b: torch.Tensor, bandwidths: Optional[Sequence[float]] = None) -> float:
    """Unbiased MMD^2 (Gretton et al. 2012, Eq. 3) with a sum of RBF kernels k(x,y) = exp(-|x-y|^2 / (2 h^2)).

    Default bandwidths: the median heuristic times (0.25, 0.5, 1, 2, 4)."""
    a, b = _cpu64(a), _cpu64(b)
    m, n = len(a), len(b)
    if m < 2 or n < 2:
        raise ValueError(f"mmd: need at least 2 samples on each side, got {m} and {n}")
    if bandwidths is None:
        h = median_bandwidth(a, b)
        bandwidths = [h * s for s in (0.25, 0.5, 1.0, 2.0, 4.0)]

    def k(x, y):
        d2 = torch.cdist(x, y).square()
        return sum(torch.exp(-d2 / (2 * h ** 2)) for h in bandwidths)

    kaa, kbb, kab = k(a, a), k(b, b), k(a, b)
    term_a = (kaa.sum() - kaa.diagonal().sum()) / (m * (m - 1))
    term_b = (kbb.sum() - kbb.diagonal().sum()) / (n * (n - 1))
    return float(term_a + term_b - 2 * kab.mean())


def on_data_fraction(samples: torch.Tensor, data: torch.Tensor, radius: float = 0.05) -> float:
    """The share of samples within `radius` of some data point (a fixed-radius precision)."""
    samples, data = _cpu64(samples).float(), _cpu64(data).float()
    hits = torch.cat([torch.cdist(samples[i:i + 2048], data).min(1).values < radius
                      for i in range(0, len(samples), 2048)])
    return float(hits.float().mean())
