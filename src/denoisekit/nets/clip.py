"""GLIDE's noised CLIP (Nichol et al. 2022, sec. 2.4; CLIP: Radford et al. 2021): an image encoder f(x_t, t) that sees
noised images and a text encoder g(c), each ending in a unit vector of the same space, with a learned temperature."""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..config import configurable, require
from .classifier import _Encoder
from .text import TextEncoder

IMAGE_DEFAULTS = {"channels": 32, "channel_mult": (1, 2, 2), "num_res_blocks": 1, "attention_levels": (),
                  "num_heads": 4, "dropout": 0.0, "resample": "conv", "time_embedding": "sinusoidal", "patch_size": 1}


@configurable
class NoisyCLIPNet(nn.Module):
    """`image(x_in, c_noise)` and `text(tokens)`: unit vectors of `embed_dim`; `scale` = exp(logit scale), the
    contrastive logits' inverse temperature (started at 1/0.07, as CLIP). `image` holds the noisy classifier's encoder
    settings, `text` the TextEncoder's."""

    def __init__(self, in_channels: int = 1, embed_dim: int = 64, image: Optional[dict] = None,
                 text: Optional[dict] = None):
        super().__init__()
        require(isinstance(embed_dim, int) and embed_dim >= 2, "embed_dim", "an integer >= 2", embed_dim)
        require(isinstance(text, dict), "text", "the text encoder's settings (set by train-clip)", text)
        settings = {**IMAGE_DEFAULTS, **(image or {})}
        unknown = set(settings) - set(IMAGE_DEFAULTS)
        require(not unknown, "net", f"keys among {sorted(IMAGE_DEFAULTS)}", sorted(unknown))
        self.image_encoder = _Encoder(in_channels, embed_dim, **settings)
        self.text_encoder = TextEncoder(**text)
        self.text_proj = nn.Linear(self.text_encoder.tok.embedding_dim, embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    @property
    def scale(self) -> torch.Tensor:
        return self.logit_scale.clamp(max=math.log(100)).exp()  # CLIP caps the inverse temperature at 100

    def image(self, x_in: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_encoder(x_in, c_noise).float(), dim=-1)

    def text(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_proj(self.text_encoder(tokens)[2]).float(), dim=-1)
