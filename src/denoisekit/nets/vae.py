"""A KL-regularised convolutional autoencoder (Rombach et al. 2022, sec. 3 and app. G; Kingma & Welling 2014): the
first stage of latent diffusion, with the latent normalisation (diffusers' `scaling_factor`, or a per-channel
mean and std) stored in the model as buffers."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..config import configurable, require
from .unet import _groups, _zero


class PlainResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice with a skip connection: the U-Net's ResBlock without a noise level."""

    def __init__(self, ch_in: int, ch_out: int):
        super().__init__()
        self.body = nn.Sequential(nn.GroupNorm(_groups(ch_in), ch_in), nn.SiLU(), nn.Conv2d(ch_in, ch_out, 3, padding=1),
                                  nn.GroupNorm(_groups(ch_out), ch_out), nn.SiLU(),
                                  _zero(nn.Conv2d(ch_out, ch_out, 3, padding=1)))
        self.skip = nn.Conv2d(ch_in, ch_out, 1) if ch_in != ch_out else nn.Identity()

    def forward(self, x):
        return self.skip(x) + self.body(x)


class KLAutoencoder(nn.Module):
    """What every first-stage autoencoder shares: q(z | x) = N(mean, diag(exp(logvar))) from `encode`, `decode`, the
    learned scalar log-scale `log_b` of the reconstruction likelihood (latent diffusion's `logvar`), and the latent
    normalisation z = (mean - shift) * scale in the buffers `latent_shift` and `latent_scale` (per latent channel),
    set from data after training (`set_latent_norm`)."""

    def _init_codec(self, latent_channels: int) -> None:
        self.latent_channels = latent_channels
        self.log_b = nn.Parameter(torch.zeros(()))
        self.register_buffer("latent_shift", torch.zeros(latent_channels))
        self.register_buffer("latent_scale", torch.ones(latent_channels))

    @torch.no_grad()
    def set_latent_norm(self, means: torch.Tensor, per_channel: bool) -> dict:
        """Set shift and scale from posterior means (N, C, h, w): per channel (mean, 1/std), or one scale factor 1/std
        with no shift (Rombach et al. 2022, app. G); returns the statistics."""
        flat = means.transpose(0, 1).reshape(self.latent_channels, -1).double()
        if per_channel:
            shift, std = flat.mean(1), flat.std(1)
        else:
            shift, std = torch.zeros(self.latent_channels, dtype=torch.float64), flat.std().expand(self.latent_channels)
        self.latent_shift.copy_(shift)
        self.latent_scale.copy_(1.0 / std.clamp_min(1e-8))
        return {"mean": flat.mean(1).tolist(), "std": flat.std(1).tolist(), "shift": shift.tolist(),
                "scale": self.latent_scale.tolist(), "per_channel": per_channel}

    def _norm(self, z: torch.Tensor):
        shape = (1, -1) + (1,) * (z.ndim - 2)
        return self.latent_shift.reshape(shape).to(z), self.latent_scale.reshape(shape).to(z)

    def normalised_posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, logvar) of q(z | x) in the normalised latent z = (z_raw - shift) * scale (with gradients)."""
        mean, logvar = self.encode(x)
        shift, scale = self._norm(mean)
        return (mean - shift) * scale, logvar + 2 * torch.log(scale)

    def decode_normalised(self, z: torch.Tensor, size=None) -> torch.Tensor:
        """The decoder's reconstruction from a normalised latent (with gradients), cropped to `size`."""
        shift, scale = self._norm(z)
        return self.decode(z / scale + shift, size)

    @torch.no_grad()
    def to_latent(self, x: torch.Tensor) -> torch.Tensor:
        """The diffusion model's latent of images x: the posterior mean, normalised."""
        return self.normalised_posterior(x)[0]

    @torch.no_grad()
    def from_latent(self, z: torch.Tensor, size=None) -> torch.Tensor:
        """Images from the diffusion model's latents: unnormalised, then decoded (cropped to `size`)."""
        return self.decode_normalised(z, size)


@configurable
class AutoencoderKL(KLAutoencoder):
    """x -> q(z | x) = N(mean, diag(exp(logvar))) -> decoder; level i works at image / 2^i, so len(channel_mult) - 1
    halvings (MNIST 28x28 with channel_mult [1, 2, 2] -> latent_channels x 7 x 7).

    A 3x3 convolution, ResBlocks and stride-2 convolutions down; nearest 2x upsampling and convolutions back up.
    """

    def __init__(self, in_channels: int = 1, latent_channels: int = 4, channels: int = 32,
                 channel_mult: Sequence[int] = (1, 2, 2), num_res_blocks: int = 1):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("latent_channels", latent_channels),
                            ("channels", channels), ("num_res_blocks", num_res_blocks)):
            require(isinstance(value, int) and value >= 1, name, "a positive integer", value)
        require(len(channel_mult) > 0 and all(m >= 1 for m in channel_mult), "channel_mult",
                "a non-empty list of positive integers", channel_mult)
        self.factor = 2 ** (len(channel_mult) - 1)
        widths = [channels * m for m in channel_mult]
        enc = [nn.Conv2d(in_channels, widths[0], 3, padding=1)]
        ch = widths[0]
        for level, w in enumerate(widths):
            for _ in range(num_res_blocks):
                enc.append(PlainResBlock(ch, w))
                ch = w
            if level < len(widths) - 1:
                enc.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        enc += [PlainResBlock(ch, ch), nn.GroupNorm(_groups(ch), ch), nn.SiLU(), nn.Conv2d(ch, 2 * latent_channels, 3,
                                                                                            padding=1)]
        self.encoder = nn.Sequential(*enc)
        self.dec_in = nn.Conv2d(latent_channels, ch, 3, padding=1)
        self.dec_mid = PlainResBlock(ch, ch)
        self.dec_levels = nn.ModuleList()
        for level, w in reversed(list(enumerate(widths))):
            self.dec_levels.append(nn.ModuleList([PlainResBlock(ch if i == 0 else w, w)
                                                  for i in range(num_res_blocks + 1)]))
            ch = w
        self.ups = nn.ModuleList([nn.Conv2d(w, w, 3, padding=1) for w in reversed(widths[1:])])
        self.dec_out = nn.Sequential(nn.GroupNorm(_groups(ch), ch), nn.SiLU(), nn.Conv2d(ch, in_channels, 3, padding=1))
        self._init_codec(latent_channels)

    def latent_shape(self, image_shape: Sequence[int]) -> tuple:
        """The latent's (C, H, W) for images of (C, H, W): each halving rounds up, as a stride-2 convolution does."""
        h, w = image_shape[-2:]
        for _ in range(self.factor.bit_length() - 1):
            h, w = (h + 1) // 2, (w + 1) // 2
        return (self.latent_channels, h, w)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, logvar) of q(z | x), logvar clamped to [-30, 20] as in latent diffusion."""
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor, size=None) -> torch.Tensor:
        """The decoder's reconstruction of x from an unnormalised latent z, cropped to `size` (H, W) when given."""
        h = self.dec_mid(self.dec_in(z))
        for i, blocks in enumerate(self.dec_levels):
            for block in blocks:
                h = block(h)
            if i < len(self.ups):
                h = self.ups[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        out = self.dec_out(h)
        if size is not None:
            out = out[..., :size[0], :size[1]]
        return out


@configurable
class LinearAutoencoder(KLAutoencoder):
    """A linear encoder x -> (mean, logvar) and a linear decoder z -> x for vectors of `dim`: the first stage whose
    latent diffusion has a closed-form answer (data that is a linear image of a Gaussian mixture)."""

    def __init__(self, dim: int = 2, latent_dim: int = 2):
        super().__init__()
        for name, value in (("dim", dim), ("latent_dim", latent_dim)):
            require(isinstance(value, int) and value >= 1, name, "a positive integer", value)
        self.enc = nn.Linear(dim, 2 * latent_dim)
        self.dec = nn.Linear(latent_dim, dim)
        self._init_codec(latent_dim)

    def latent_shape(self, data_shape: Sequence[int]) -> tuple:
        return (self.latent_channels,)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.enc(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor, size=None) -> torch.Tensor:
        return self.dec(z)
