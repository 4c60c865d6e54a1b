"""A U-Net (Ronneberger et al. 2015) as in Ho et al. 2020 and Dhariwal & Nichol 2021: ResBlocks with AdaGN,
multi-head self-attention at chosen levels, optional BigGAN resampling, class and concat conditioning slots."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..config import configurable, require
from ..conditioning import Cond
from .embeddings import ConditionEmbedding
from .text import CrossAttention, PretrainedTextEncoder, TextEncoder


def _groups(ch: int, max_groups: int = 32) -> int:
    """The most GroupNorm groups (at most max_groups) that divide ch and keep at least 4 channels a group."""
    for g in range(min(max_groups, max(1, ch // 4)), 0, -1):
        if ch % g == 0:
            return g
    return 1


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class Resample(nn.Module):
    """Nearest-neighbour 2x up or stride-2 down, optionally with a 3x3 convolution."""

    def __init__(self, ch: int, direction: str, conv: bool = True):
        super().__init__()
        self.direction = direction
        stride = 2 if direction == "down" else 1
        self.conv = nn.Conv2d(ch, ch, 3, stride=stride, padding=1) if conv else None

    def forward(self, x, emb=None, size=None):
        if self.direction == "up":
            x = F.interpolate(x, size=size, mode="nearest") if size is not None else F.interpolate(x, scale_factor=2.0)
            return self.conv(x) if self.conv is not None else x
        return self.conv(x) if self.conv is not None else F.avg_pool2d(x, 2, ceil_mode=True)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice; the embedding enters as AdaGN scale and shift (Dhariwal & Nichol 2021, sec. 3)."""

    def __init__(self, ch_in: int, ch_out: int, emb_dim: int, dropout: float = 0.0, resample: Optional[str] = None):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(ch_in), ch_in)
        self.conv1 = nn.Conv2d(ch_in, ch_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * ch_out)
        self.norm2 = nn.GroupNorm(_groups(ch_out), ch_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(ch_out, ch_out, 3, padding=1))
        self.skip = nn.Conv2d(ch_in, ch_out, 1) if ch_in != ch_out else nn.Identity()
        self.resample = resample  # BigGAN-style: resample inside the block (Brock et al. 2019)

    def _resample(self, x, size):
        if self.resample == "up":
            return F.interpolate(x, size=size, mode="nearest")
        if self.resample == "down":
            return F.avg_pool2d(x, 2, ceil_mode=True)
        return x

    def forward(self, x, emb, size=None):
        h = F.silu(self.norm1(x))
        h, x = self._resample(h, size), self._resample(x, size)
        h = self.conv1(h)
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over the pixels, with a residual connection."""

    def __init__(self, ch: int, num_heads: int = 4):
        super().__init__()
        if ch % num_heads:
            raise ValueError(f"num_heads: {num_heads} does not divide the {ch} channels of an attention level")
        self.heads = num_heads
        self.norm = nn.GroupNorm(_groups(ch), ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = _zero(nn.Conv2d(ch, ch, 1))

    def forward(self, x, emb=None, size=None):
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)
        # (3, b, heads, hw, c/heads), contiguous: strided q, k, v send SDPA to its slow math kernel (6-10x on a CPU)
        q, k, v = qkv.permute(1, 0, 2, 4, 3).contiguous().unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)  # (b, heads, hw, c/heads)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


def check_encoder_arguments(in_channels, channels, channel_mult, num_res_blocks, attention_levels, num_heads, dropout,
                            resample, patch_size) -> None:
    """One-line errors for the arguments the U-Net and the noisy classifier share."""
    for name, value in (("in_channels", in_channels), ("channels", channels), ("num_res_blocks", num_res_blocks),
                        ("num_heads", num_heads), ("patch_size", patch_size)):
        require(value >= 1, name, "a positive integer", value)
    require(len(channel_mult) > 0 and all(m >= 1 for m in channel_mult), "channel_mult",
            "a non-empty list of positive integers", channel_mult)
    require(all(0 <= a < len(channel_mult) for a in attention_levels), "attention_levels",
            f"levels among 0..{len(channel_mult) - 1} (one per channel_mult entry)", attention_levels)
    require(0 <= dropout < 1, "dropout", "a probability in [0, 1)", dropout)
    require(resample in ("conv", "biggan"), "resample", "'conv' or 'biggan'", resample)


def _resampler(resample: str, emb_dim: int, dropout: float):
    """The down/up-sampling layer: a plain (conv) resample, or a BigGAN ResBlock that resamples inside."""
    def make(ch, direction):
        if resample == "biggan":
            return ResBlock(ch, ch, emb_dim, dropout, resample=direction)
        return Resample(ch, direction)
    return make


def _attention(ch, num_heads, context_dim) -> list:
    """Self-attention, and cross-attention to the text tokens when the network reads text."""
    return [Attention(ch, num_heads)] + ([CrossAttention(ch, context_dim, num_heads)] if context_dim else [])


def encoder(channels, channel_mult, num_res_blocks, attention_levels, num_heads, dropout, emb_dim, resampler,
            context_dim: Optional[int] = None):
    """The U-Net's down path (shared with the noisy classifier): groups of layers, which groups halve the
    resolution, and the channels of every skip connection (the first is the input convolution's)."""
    down, halves, skips, ch = nn.ModuleList(), [], [channels], channels
    for level, mult in enumerate(channel_mult):
        for _ in range(num_res_blocks):
            layer = [ResBlock(ch, channels * mult, emb_dim, dropout)]
            ch = channels * mult
            if level in attention_levels:
                layer += _attention(ch, num_heads, context_dim)
            down.append(nn.ModuleList(layer))
            halves.append(False)
            skips.append(ch)
        if level < len(channel_mult) - 1:
            down.append(nn.ModuleList([resampler(ch, "down")]))
            halves.append(True)
            skips.append(ch)
    return down, halves, skips


@configurable
class UNet(nn.Module):
    """`net(x, c_noise, cond)`: image to image. Level i works at resolution image/2^i with channels*channel_mult[i].

    `patch_size` p folds p x p pixels into channels first (lossless), cutting the cost a pixel by about p^2.
    Slots for later features: `num_classes` (label embedding, with index num_classes meaning 'no label'),
    `cond_channels` (an image concatenated to the input), `out_channels` (2x in_channels for learned variance) and
    `latent_dim` (a DDGAN generator's latent z, mapped into the embedding that drives every AdaGN layer), `augment` (a
    super-resolution stage's augmentation level u, Cond.aug, embedded likewise) and `text` (a TextEncoder's settings:
    the caption's tokens, Cond.tokens, encoded by the network itself, read by cross-attention at the attention
    levels, and the pooled vector added to the embedding, as GLIDE does; `frozen: true` keeps the encoder fixed) and
    `pooled_dim` (a given pooled vector, Cond.pooled, projected into the embedding: unCLIP's decoder reads a CLIP image
    embedding so).
    """

    def __init__(self, in_channels: int = 1, out_channels: Optional[int] = None, channels: int = 32,
                 channel_mult: Sequence[int] = (1, 2, 2), num_res_blocks: int = 1,
                 attention_levels: Sequence[int] = (), num_heads: int = 4, dropout: float = 0.0,
                 resample: str = "conv", time_embedding: str = "sinusoidal",
                 num_classes: Optional[int] = None, cond_channels: int = 0, patch_size: int = 1,
                 latent_dim: Optional[int] = None, augment: bool = False, text: Optional[dict] = None,
                 pooled_dim: Optional[int] = None):
        super().__init__()
        check_encoder_arguments(in_channels, channels, channel_mult, num_res_blocks, attention_levels, num_heads,
                                dropout, resample, patch_size)
        require(cond_channels >= 0, "cond_channels", "an integer >= 0", cond_channels)
        require(out_channels is None or out_channels >= 1, "out_channels", "a positive integer or null", out_channels)
        self.patch_size = patch_size  # pixel-unshuffle p x p patches into channels: p^2 less work a pixel
        out_channels = out_channels or in_channels
        emb_dim = 4 * channels
        self.embed = ConditionEmbedding(time_embedding, channels, emb_dim, num_classes, latent_dim=latent_dim,
                                        augment=augment, pooled_dim=pooled_dim)
        self.reads = ("label", "concat") + (("latent",) if latent_dim else ()) + (("aug",) if augment else ()) + (
            ("tokens",) if text else ()) + (("pooled",) if pooled_dim else ())
        require(not text or attention_levels, "attention_levels", "at least one level when the network reads text "
                "(cross-attention sits beside self-attention)", list(attention_levels))
        text = dict(text or {})
        frozen = bool(text.pop("frozen", False))  # a pre-trained encoder kept fixed (Imagen's frozen T5; here a CLIP's)
        reader = (PretrainedTextEncoder(**text) if "hf" in text else TextEncoder(**text)) if text else None
        self.text = reader.requires_grad_(not frozen) if reader is not None else None
        context_dim = self.text.dim if text else None
        self.pool = nn.Linear(context_dim, emb_dim) if text else None
        self.conv_in = nn.Conv2d((in_channels + cond_channels) * patch_size**2, channels, 3, padding=1)

        resampler = _resampler(resample, emb_dim, dropout)
        self.down, self._resamples_down, skips = encoder(channels, channel_mult, num_res_blocks, attention_levels,
                                                         num_heads, dropout, emb_dim, resampler, context_dim)
        ch = skips[-1]
        mid = [ResBlock(ch, ch, emb_dim, dropout)]
        mid += [*_attention(ch, num_heads, context_dim), ResBlock(ch, ch, emb_dim, dropout)] if attention_levels else []
        self.mid = nn.ModuleList(mid)
        self.up = nn.ModuleList()
        self._resamples_up: list[bool] = []
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layer = [ResBlock(ch + skips.pop(), channels * mult, emb_dim, dropout)]
                ch = channels * mult
                if level in attention_levels:
                    layer += _attention(ch, num_heads, context_dim)
                if level > 0 and i == num_res_blocks:
                    layer.append(resampler(ch, "up"))
                self.up.append(nn.ModuleList(layer))
                self._resamples_up.append(level > 0 and i == num_res_blocks)
        self.norm_out = nn.GroupNorm(_groups(ch), ch)
        self.conv_out = _zero(nn.Conv2d(ch, out_channels * patch_size**2, 3, padding=1))

    @staticmethod
    def _run(layers, h, emb, size=None, text=None):
        for layer in layers:
            h = layer(h, *text) if isinstance(layer, CrossAttention) else layer(h, emb, size)
        return h

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond=None) -> torch.Tensor:
        cond = Cond.of(cond)
        if cond is not None:
            cond.check_reads(self.reads, "the U-Net")
        emb = self.embed(c_noise, cond, x.shape[0])
        text = None
        if self.text is not None:
            if cond is None or cond.tokens is None:
                raise ValueError("cond: the U-Net reads a caption's tokens (Cond.tokens); give the empty caption "
                                 "(all padding) for an unconditional prediction")
            context, mask, pooled = self.text(cond.tokens)
            emb, text = emb + self.pool(pooled), (context, mask)
        if cond is not None and cond.concat is not None:
            x = torch.cat([x, cond.concat], dim=1)
        if self.patch_size > 1:
            if x.shape[-1] % self.patch_size or x.shape[-2] % self.patch_size:
                raise ValueError(f"patch_size: image size {tuple(x.shape[-2:])} is not divisible by {self.patch_size}")
            x = F.pixel_unshuffle(x, self.patch_size)
        h = self.conv_in(x)
        hs, sizes = [h], []
        for layers, halves in zip(self.down, self._resamples_down):
            if halves:
                sizes.append(h.shape[-2:])
            h = self._run(layers, h, emb, text=text)
            hs.append(h)
        h = self._run(self.mid, h, emb, text=text)
        for layers, doubles in zip(self.up, self._resamples_up):
            h = torch.cat([h, hs.pop()], dim=1)
            h = self._run(layers, h, emb, sizes.pop() if doubles else None, text)
        out = self.conv_out(F.silu(self.norm_out(h)))
        return F.pixel_shuffle(out, self.patch_size) if self.patch_size > 1 else out
