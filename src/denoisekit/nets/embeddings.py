"""Noise-level embeddings: sinusoidal (Vaswani et al. 2017 / Ho et al. 2020) and random Fourier (Tancik et al. 2020)."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from ..conditioning import Cond


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


class ConditionEmbedding(nn.Module):
    """The conditioning vector: embedded noise level, plus a label embedding (index num_classes = 'no label'), plus a
    latent z through a mapping network (the style vector of a DDGAN generator's AdaGN layers; Xiao et al. 2022), plus
    the embedded augmentation level u in [0, 1] of a super-resolution stage's input (Ho et al. 2021, sec. 4.3), plus a
    projected pooled vector (Cond.pooled: a CLIP embedding, as unCLIP's prior and decoder read it; Ramesh et al. 2022,
    sec. 2.1; zeros, the null condition, for classifier-free guidance)."""

    def __init__(self, kind: str, base_dim: int, emb_dim: int, num_classes=None, final_linear: bool = True,
                 latent_dim: Optional[int] = None, augment: bool = False, pooled_dim: Optional[int] = None):
        super().__init__()
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes: expected a positive number of classes, got {num_classes}")
        if latent_dim is not None and latent_dim < 1:
            raise ValueError(f"latent_dim: expected a positive size of the latent z or null, got {latent_dim}")
        layers = [make_embedding(kind, base_dim), nn.Linear(base_dim, emb_dim), nn.SiLU()]
        self.noise = nn.Sequential(*layers, *([nn.Linear(emb_dim, emb_dim)] if final_linear else []))
        self.num_classes = num_classes
        self.label = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None
        self.latent_dim = latent_dim
        self.latent = nn.Sequential(nn.Linear(latent_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)) \
            if latent_dim else None
        self.augment = nn.Sequential(SinusoidalEmbedding(base_dim), nn.Linear(base_dim, emb_dim), nn.SiLU(),
                                     nn.Linear(emb_dim, emb_dim)) if augment else None
        if pooled_dim is not None and pooled_dim < 1:
            raise ValueError(f"pooled_dim: expected a positive size of the pooled vector or null, got {pooled_dim}")
        self.pooled_dim = pooled_dim
        self.pooled = nn.Sequential(nn.Linear(pooled_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)) \
            if pooled_dim else None

    def forward(self, c_noise: torch.Tensor, cond: Optional[Cond], batch: int) -> torch.Tensor:
        """The noise level's embedding plus the label's (a missing label is 'no label') plus the mapped latent."""
        emb = self.noise(c_noise.reshape(-1).expand(batch) if c_noise.numel() == 1 else c_noise)
        if self.latent is not None:
            z = None if cond is None else cond.latent
            if z is None:
                raise ValueError("cond: this network is a generator that reads a latent z (Cond.latent); sample it "
                                 "with sampler ddgan")
            if z.shape != (batch, self.latent_dim):
                raise ValueError(f"cond.latent: expected shape ({batch}, {self.latent_dim}), got {tuple(z.shape)}")
            emb = emb + self.latent(z.to(emb.dtype))
        if self.augment is not None:
            u = None if cond is None else cond.aug
            if u is None:
                raise ValueError("cond: this network is a super-resolution stage that reads the augmentation level of "
                                 "its input (Cond.aug); sample it with 'denoisekit upscale' or 'sample --cascade'")
            if u.shape != (batch,):
                raise ValueError(f"cond.aug: expected shape ({batch},), got {tuple(u.shape)}")
            emb = emb + self.augment(1000 * u)  # u in [0, 1] on the scale of DDPM's times
        if self.pooled is not None:
            p = None if cond is None else cond.pooled
            if p is None or p.shape != (batch, self.pooled_dim):
                raise ValueError(f"cond.pooled: this network reads a pooled vector of size {self.pooled_dim} per "
                                 f"example (a CLIP embedding), got {None if p is None else tuple(p.shape)}")
            emb = emb + self.pooled(p.to(emb.dtype))
        if self.label is not None:
            labels = None if cond is None else cond.label
            if labels is None:
                labels = torch.full((batch,), self.num_classes, device=emb.device, dtype=torch.long)
            labels = torch.where(labels < 0, self.num_classes, labels)  # -1: no label (classifier-free guidance)
            emb = emb + self.label(labels)
        return emb
