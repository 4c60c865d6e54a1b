"""An MLP denoiser network for low-dimensional (e.g. 2-D toy) data."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..config import configurable, require
from ..conditioning import Cond
from .embeddings import ConditionEmbedding


@configurable
class MLP(nn.Module):
    """`net(x, c_noise, cond)` for vectors: residual SiLU blocks with the noise embedding added to each; `latent_dim`
    makes it a generator that also reads a latent z (`Cond.latent`), `pooled_dim` a model of a pooled vector
    (`Cond.pooled`: unCLIP's prior reads the caption's CLIP text embedding so)."""

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3, time_embedding: str = "sinusoidal",
                 num_classes: Optional[int] = None, out_dim: Optional[int] = None,
                 latent_dim: Optional[int] = None, pooled_dim: Optional[int] = None):
        super().__init__()
        for name, value, least in (("dim", dim, 1), ("hidden", hidden, 1), ("depth", depth, 0)):
            require(value >= least, name, "a positive integer" if least else "an integer >= 0", value)
        require(out_dim is None or out_dim >= 1, "out_dim", "a positive integer or null", out_dim)
        self.embed = ConditionEmbedding(time_embedding, hidden, hidden, num_classes, final_linear=False,
                                        latent_dim=latent_dim, pooled_dim=pooled_dim)
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(depth)])
        self.emb_proj = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(depth)])
        self.out = nn.Linear(hidden, out_dim or dim)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond=None) -> torch.Tensor:
        cond = Cond.of(cond)
        if cond is not None:
            cond.check_reads(("label",) + (("latent",) if self.embed.latent_dim else ()) +
                             (("pooled",) if self.embed.pooled_dim else ()), "the MLP")
        emb = self.embed(c_noise, cond, x.shape[0])
        h = self.inp(x)
        for block, proj in zip(self.blocks, self.emb_proj):
            h = h + block(F.silu(h + proj(emb)))
        return self.out(F.silu(h))
