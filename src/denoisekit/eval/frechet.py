"""Frechet distance between Gaussians fitted to feature sets (Heusel et al. 2017, Eq. 6; Dowson & Landau 1982)."""
from __future__ import annotations

import torch


def gaussian_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance of (N, D) features, in float64."""
    f = torch.as_tensor(features).detach().cpu().reshape(len(features), -1).double()
    if len(f) < 2:
        raise ValueError(f"features: need at least 2 rows to fit a covariance, got {len(f)}")
    mu = f.mean(0)
    centred = f - mu
    return mu, centred.T @ centred / (len(f) - 1)


def _sqrt_psd(a: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a positive semi-definite matrix by its eigendecomposition."""
    w, v = torch.linalg.eigh((a + a.T) / 2)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """d^2 = |mu1 - mu2|^2 + tr(C1 + C2 - 2 (C1^1/2 C2 C1^1/2)^1/2), the squared 2-Wasserstein distance of Gaussians."""
    mu1, mu2, cov1, cov2 = (torch.as_tensor(a).detach().cpu().double() for a in (mu1, mu2, cov1, cov2))
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape:
        raise ValueError(f"frechet_distance: feature sizes differ ({tuple(mu1.shape)} vs {tuple(mu2.shape)})")
    s1 = _sqrt_psd(cov1)
    # tr((C1 C2)^1/2) = sum of square roots of the eigenvalues of the PSD matrix C1^1/2 C2 C1^1/2
    inner = torch.linalg.eigvalsh(s1 @ cov2 @ s1).clamp_min(0).sqrt().sum()
    d2 = (mu1 - mu2).square().sum() + cov1.trace() + cov2.trace() - 2 * inner
    return float(d2.clamp_min(0))


def frechet_distance_features(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between two feature sets."""
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))
