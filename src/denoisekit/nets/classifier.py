"""The noisy classifier p_phi(y | x_t, t) of classifier guidance (Dhariwal & Nichol 2021, sec. 4.1): the U-Net's
encoder half with its time embedding, a middle ResBlock, and a pooled linear head; and the same encoder as a
time-conditional discriminator D(x_{t-1}, x_t, t) of a denoising diffusion GAN (Xiao et al. 2022)."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..conditioning import Cond
from ..config import configurable, require
from .embeddings import ConditionEmbedding
from .unet import ResBlock, _groups, _resampler, check_encoder_arguments, encoder


class _Encoder(nn.Module):
    """The U-Net's down path and middle block, then GroupNorm-SiLU, global average pooling and a linear layer to
    `outputs` numbers; the embedding holds the noise level and, given `label_classes`, a class label."""

    def __init__(self, in_channels: int, outputs: int, channels: int, channel_mult: Sequence[int],
                 num_res_blocks: int, attention_levels: Sequence[int], num_heads: int, dropout: float,
                 resample: str, time_embedding: str, patch_size: int, label_classes=None):
        super().__init__()
        check_encoder_arguments(in_channels, channels, channel_mult, num_res_blocks, attention_levels, num_heads,
                                dropout, resample, patch_size)
        self.patch_size = patch_size
        emb_dim = 4 * channels
        self.embed = ConditionEmbedding(time_embedding, channels, emb_dim, label_classes)
        self.conv_in = nn.Conv2d(in_channels * patch_size**2, channels, 3, padding=1)
        self.down, _, skips = encoder(channels, channel_mult, num_res_blocks, attention_levels, num_heads, dropout,
                                      emb_dim, _resampler(resample, emb_dim, dropout))
        ch = skips[-1]
        self.mid = ResBlock(ch, ch, emb_dim, dropout)
        self.norm_out = nn.GroupNorm(_groups(ch), ch)
        self.head = nn.Linear(ch, outputs)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond=None) -> torch.Tensor:
        emb = self.embed(c_noise, Cond.of(cond) if self.embed.label is not None else None, x.shape[0])
        if self.patch_size > 1:
            x = F.pixel_unshuffle(x, self.patch_size)
        h = self.conv_in(x)
        for layers in self.down:
            for layer in layers:
                h = layer(h, emb)
        h = F.silu(self.norm_out(self.mid(h, emb)))
        return self.head(h.mean(dim=(-2, -1)))


@configurable
class EncoderClassifier(_Encoder):
    """`net(x_t, c_noise) -> logits (B, num_classes)`: the U-Net's down path and middle block, then
    GroupNorm-SiLU, global average pooling and a linear layer."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, channels: int = 32,
                 channel_mult: Sequence[int] = (1, 2, 2), num_res_blocks: int = 1,
                 attention_levels: Sequence[int] = (), num_heads: int = 4, dropout: float = 0.0,
                 resample: str = "conv", time_embedding: str = "sinusoidal", patch_size: int = 1):
        require(num_classes >= 2, "num_classes", "at least 2 classes", num_classes)
        super().__init__(in_channels, num_classes, channels, channel_mult, num_res_blocks, attention_levels,
                         num_heads, dropout, resample, time_embedding, patch_size)


@configurable
class EncoderDiscriminator(_Encoder):
    """`net(x, c_noise, cond) -> (B, 1)` logits of 'real': the classifier's encoder as a time-conditional
    discriminator; x is a pair (x_{t-1}, x_t) stacked on channels, `num_classes` a class-conditional GAN's labels."""

    def __init__(self, in_channels: int = 2, channels: int = 32, channel_mult: Sequence[int] = (1, 2, 2),
                 num_res_blocks: int = 1, attention_levels: Sequence[int] = (), num_heads: int = 4,
                 dropout: float = 0.0, resample: str = "conv", time_embedding: str = "sinusoidal",
                 patch_size: int = 1, num_classes: Optional[int] = None):
        super().__init__(in_channels, 1, channels, channel_mult, num_res_blocks, attention_levels, num_heads,
                         dropout, resample, time_embedding, patch_size, num_classes)
