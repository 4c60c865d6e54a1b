"""Improved precision and recall with k-nearest-neighbour manifolds (Kynkaanniemi et al. 2019, Eqs. 1-3)."""
from __future__ import annotations

import torch


def _chunked_cdist(a: torch.Tensor, b: torch.Tensor, chunk: int = 2048):
    for i in range(0, len(a), chunk):
        yield i, torch.cdist(a[i:i + chunk], b)


def knn_radii(features: torch.Tensor, k: int = 3) -> torch.Tensor:
    """Distance from each point to its k-th nearest neighbour within the same set (itself excluded)."""
    if len(features) <= k:
        raise ValueError(f"k: need more than k={k} points to build a k-NN manifold, got {len(features)}")
    radii = torch.empty(len(features), dtype=features.dtype)
    for i, d in _chunked_cdist(features, features):
        radii[i:i + len(d)] = d.kthvalue(k + 1, dim=1).values  # the 1st is the point itself at distance 0
    return radii


def coverage_by(manifold: torch.Tensor, radii: torch.Tensor, queries: torch.Tensor) -> float:
    """Share of `queries` inside at least one ball B(phi, NN_k(phi)) of the manifold: f(phi, Phi) of Eq. 1."""
    inside = torch.zeros(len(queries), dtype=torch.bool)
    for i, d in _chunked_cdist(queries, manifold):
        inside[i:i + len(d)] = (d <= radii[None]).any(1)
    return float(inside.float().mean())


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """precision: fake samples on the real manifold; recall: real samples on the fake manifold."""
    real = torch.as_tensor(real).detach().cpu().reshape(len(real), -1).float()
    fake = torch.as_tensor(fake).detach().cpu().reshape(len(fake), -1).float()
    precision = coverage_by(real, knn_radii(real, k), fake)
    recall = coverage_by(fake, knn_radii(fake, k), real)
    return precision, recall
