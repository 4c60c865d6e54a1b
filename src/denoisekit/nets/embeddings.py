"""Noise-level embeddings: sinusoidal (Vaswani et al. 2017 / Ho et al. 2020) and random Fourier (Tancik et al. 2020)."""
from __future__ import annotations

import math

import torch
from torch import nn


class SinusoidalEmbedding(nn.Module):
    """[cos(c w_k), sin(c w_k)] with w_k = max_period^(-k/half): for DDPM times c in [0, T)."""

    def __init__(self, dim: int, max_period: float = 10000.0):
        super().__init__()
        half = dim // 2
        self.register_buffer("freqs", torch.exp(-math.log(max_period) * torch.arange(half) / half), persistent=False)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        args = c.float()[:, None] * self.freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class FourierEmbedding(nn.Module):
    """[cos(2 pi c w), sin(2 pi c w)] with fixed w ~ N(0, scale^2): for EDM's c_noise = ln(sigma)/4."""

    def __init__(self, dim: int, scale: float = 16.0):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("w", torch.randn(dim // 2, generator=g) * scale)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        args = 2 * math.pi * c.float()[:, None] * self.w[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


def make_embedding(kind: str, dim: int) -> nn.Module:
    """The noise-level embedding by name: 'sinusoidal' or 'fourier'."""
    if kind == "sinusoidal":
        return SinusoidalEmbedding(dim)
    if kind == "fourier":
        return FourierEmbedding(dim)
    raise ValueError(f"time_embedding: expected 'sinusoidal' or 'fourier', got {kind!r}")


def split_cond(cond):
    """Conditioning as (class labels or None, concat image or None): cond is None, a label tensor or a dict."""
    if cond is None:
        return None, None
    if isinstance(cond, dict):
        return cond.get("label"), cond.get("concat")
    return cond, None
