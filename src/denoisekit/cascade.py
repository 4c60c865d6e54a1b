"""Cascaded generation (Ho et al. 2021, "Cascaded Diffusion Models"; Saharia et al. 2022): a super-resolution model
conditioned on an upsampled low-resolution image (the Cond's concat slot), trained with Gaussian noise-conditioning
augmentation of that image at a random level u, which the network also reads (the Cond's aug slot)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional

import torch
import torch.nn.functional as F

from .conditioning import Cond
from .config import configurable, require
from .data import ArrayDataset, resize_images
from .utils import Generator, rand, randn, sample_generators

AUG_STREAM = 1 << 30  # the augmentation noise of sample i is drawn from generator (seed, AUG_STREAM + i)


@configurable
class SuperResolution:
    """What a super-resolution stage is: its input resolution `low_size`, the augmentation levels u ~ U[0, aug_max]
    it is trained with, and the level `aug_level` it samples with by default (CDM, sec. 4.3)."""

    def __init__(self, low_size: int, aug_max: float = 0.5, aug_level: float = 0.1):
        require(isinstance(low_size, int) and not isinstance(low_size, bool) and low_size >= 2,
                "low_size", "the base model's image size, an integer >= 2", low_size)
        require(0 <= aug_max <= 1, "aug_max", "the largest augmentation level, in [0, 1]", aug_max)
        check_aug_level(aug_level, "aug_level")
        self.low_size, self.aug_max, self.aug_level = low_size, float(aug_max), float(aug_level)

    def low_shape(self, shape) -> tuple:
        """The (C, low, low) images this stage takes, for full-resolution images of shape (C, H, W)."""
        return (shape[0], self.low_size, self.low_size)

    def check_shape(self, shape, where: str = "super_resolution.low_size") -> None:
        """A one-line error unless the images (C, H, W) are larger than low_size (the stage has something to add)."""
        if len(shape) != 3:
            raise ValueError(f"{where}: super-resolution needs image data, got examples of shape {list(shape)}")
        if not self.low_size < min(shape[1:]):
            raise ValueError(f"{where}: expected a size below the data's {shape[1]}x{shape[2]}, got {self.low_size}")


def check_aug_level(u, where: str) -> float:
    """An augmentation level in [0, 1], or a one-line error naming `where`."""
    require(isinstance(u, (int, float)) and not isinstance(u, bool) and 0 <= u <= 1, where,
            "an augmentation level in [0, 1] (the noise std of the low-resolution input)", u)
    return float(u)


def upsample(low: torch.Tensor, size) -> torch.Tensor:
    """The low-resolution image brought to the output's size by bilinear interpolation: the concat input."""
    return F.interpolate(low, size=tuple(size), mode="bilinear", align_corners=False)


def augment(c: torch.Tensor, u: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Gaussian conditioning augmentation on the variance-preserving path: sqrt(1 - u^2) c + u eps (CDM, sec. 4.3)."""
    u = u.to(c.dtype).reshape(-1, *([1] * (c.ndim - 1)))
    return (1 - u**2).sqrt() * c + u * eps


def conditioned(low: torch.Tensor, size, u: torch.Tensor, generator: Generator, label=None) -> Cond:
    """The Cond a super-resolution network reads: the upsampled low-resolution image augmented at levels u (B,), the
    levels themselves, and the class labels or the caption's tokens if any (`label`: a label tensor or a Cond)."""
    c = upsample(low, size)
    eps = randn(c.shape, generator, device=c.device, dtype=c.dtype)
    return replace(Cond.of(label) or Cond(), concat=augment(c, u, eps), aug=u.to(c.device, torch.float32))


@dataclass
class SuperResolutionData(ArrayDataset):
    """Full-resolution images whose conditioning is their own low-resolution version (and label, if `labelled`):
    `low` holds the images resized to low_size, as the base model's training data are."""
    low: Optional[torch.Tensor] = None
    labelled: bool = False
    tokens: Optional[torch.Tensor] = None  # the captions' tokens of a text-conditional stage (Imagen's)
    tokenizer: Any = None

    @classmethod
    def of(cls, ds: ArrayDataset, sr: SuperResolution, labelled: bool) -> "SuperResolutionData":
        """ds's images with their low-resolution versions (and ds's caption tokens and tokenizer, if it has them)."""
        sr.check_shape(tuple(ds.x.shape[1:]))
        return cls(ds.x, ds.y, ds.num_classes, ds.name, resize_images(ds.x, sr.low_size), labelled,
                   getattr(ds, "tokens", None), getattr(ds, "tokenizer", None))

    def conditioning(self, idx) -> Cond:
        """The examples' low-resolution images, upsampled, not yet augmented (the loss augments them)."""
        return Cond(label=self.y[idx] if self.labelled else None, concat=upsample(self.low[idx], self.x.shape[-2:]),
                    tokens=self.tokens[idx] if self.tokens is not None else None)


class NoiseAugmented:
    """A loss with noise-conditioning augmentation: each example's concat input c replaced by sqrt(1 - u^2) c + u eps,
    u ~ U[0, aug_max] from the example's generator, and u given to the network in Cond.aug (CDM, sec. 4.3)."""

    def __init__(self, loss, aug_max: float):
        require(0 <= aug_max <= 1, "aug_max", "an augmentation level in [0, 1]", aug_max)
        self.loss, self.aug_max = loss, float(aug_max)

    def augmented(self, cond, generator: Generator) -> Cond:
        """cond with its concat image augmented at a fresh level per example, and the levels in its aug slot."""
        cond = Cond.of(cond)
        if cond is None or cond.concat is None:
            raise ValueError("super_resolution: the loss needs the low-resolution images in Cond.concat")
        c = cond.concat
        u = rand((c.shape[0],), generator, device=c.device) * self.aug_max
        eps = randn(c.shape, generator, device=c.device, dtype=c.dtype)
        return replace(cond, concat=augment(c, u, eps), aug=u)

    def __call__(self, model, x0, cond=None, generator: Generator = None):
        return self.loss(model, x0, self.augmented(cond, generator), generator)

    def terms(self, model, x0, cond, generator, **phase):
        """The wrapped loss's named terms (its own, or {'loss': its value}) on the augmented conditioning."""
        cond = self.augmented(cond, generator)
        if hasattr(self.loss, "terms"):
            return self.loss.terms(model, x0, cond, generator, **phase)
        return {"loss": self.loss(model, x0, cond, generator)}

    def __getattr__(self, name):  # the wrapped loss's other hooks (state_dict, after_step, double_backward, ...)
        if name == "loss":
            raise AttributeError(name)
        return getattr(self.loss, name)

    def config(self) -> dict:
        """The wrapped loss's record, with the augmentation beside it."""
        return {**self.loss.config(), "noise_augmentation": {"aug_max": self.aug_max}}


@torch.no_grad()
def upscale(denoiser, low: torch.Tensor, size, *, aug_level: float, seed: int = 0, labels=None, generate_kwargs=None):
    """Super-resolved images of `low` (N, C, h, w): the low-resolution input augmented at aug_level (its noise drawn
    from each sample's own stream, so sample i depends only on (seed, i)), then the sampler run on the SR model."""
    from .samplers import generate
    n = low.shape[0]
    u = torch.full((n,), check_aug_level(aug_level, "aug_level"), device=low.device)
    cond = conditioned(low, size, u, sample_generators(seed, n, offset=AUG_STREAM), labels)
    shape = (low.shape[1], *size)
    return generate(denoiser, n, shape, seed=seed, labels=cond, **(generate_kwargs or {}))
