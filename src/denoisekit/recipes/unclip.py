"""unCLIP (DALL-E 2; Ramesh et al. 2022) on a noised CLIP from `train-clip`: a prior p(z_i | z_t) over the CLIP image
embeddings of the data given their captions' text embeddings (sec. 2.2; a diffusion model on vectors, x0-prediction
as the paper's), and a decoder p(x | z_i) conditioned on the image embedding (sec. 2.1); text to image through both,
variations of an image (its embedding decoded with new noise), interpolation (slerp between two images' embeddings)
and text diffs (the embedding moved toward the difference of two captions' text embeddings, sec. 3.3)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional

import torch

from ..conditioning import Cond
from ..data import ArrayDataset

STAGES = ("prior", "decoder")


@dataclass
class UnCLIPSettings:
    """The unclip section: the train-clip run whose embeddings are modelled, and which stage this run trains."""
    clip: str = ""
    stage: Literal["prior", "decoder"] = "decoder"

    def __post_init__(self):
        from ..config import require
        require(isinstance(self.clip, str) and bool(self.clip), "unclip.clip", "the folder of a 'denoisekit "
                "train-clip' run", self.clip)
        require(self.stage in STAGES, "unclip.stage", "prior or decoder", self.stage)


@dataclass
class PooledData(ArrayDataset):
    """Examples x (images, or embedding vectors) whose conditioning is a pooled vector each (Cond.pooled)."""
    pooled: Optional[torch.Tensor] = None

    def conditioning(self, idx) -> Cond:
        return Cond(pooled=self.pooled[idx])


@torch.no_grad()
def clip_embeddings(clip, images: Optional[torch.Tensor], captions=None, batch: int = 500) -> tuple:
    """(the CLIP image embeddings z_i of clean images (t = 0) or None, the text embeddings z_t of captions or None):
    unit vectors (N, D)."""
    device = next(clip.clip.parameters()).device
    z_i = None
    if images is not None:
        z_i = torch.cat([clip.clip.image(chunk.to(device), torch.zeros(len(chunk), device=device)).cpu()
                         for chunk in images.split(batch)])
    z_t = None
    if captions is not None:
        z_t = torch.cat([clip.clip.net.text(clip.tokenizer(captions[i:i + batch]).to(device)).cpu()
                         for i in range(0, len(captions), batch)])
    return z_i, z_t


def prior_scale(dim: int) -> float:
    """The prior's data are the unit image embeddings times sqrt(D): about unit variance per coordinate."""
    return math.sqrt(dim)


def unclip_dataset(settings: UnCLIPSettings, images) -> PooledData:
    """The stage's training data: (image embeddings x sqrt(D), given text embeddings) for the prior, (images, given
    image embeddings) for the decoder."""
    from ..text import CaptionedDataset
    from .text import pretrained_clip
    clip = pretrained_clip(settings.clip, "unclip.clip")
    if not images.is_image:
        raise ValueError(f"unclip: models images and their CLIP embeddings; the data set {images.name!r} holds vectors")
    if tuple(clip.shape) != tuple(images.x.shape[1:]):
        raise ValueError(f"unclip.clip: the CLIP knows images of shape {list(clip.shape)}, the data are "
                         f"{list(images.x.shape[1:])}")
    if settings.stage == "prior" and not isinstance(images, CaptionedDataset):
        raise ValueError(f"unclip: the prior learns image embeddings given captions; the data set {images.name!r} "
                         f"has none")
    z_i, z_t = clip_embeddings(clip, images.x, images.captions if settings.stage == "prior" else None)
    if settings.stage == "prior":
        return PooledData(z_i * prior_scale(z_i.shape[1]), images.y, images.num_classes,
                          f"{images.name} CLIP image embeddings", pooled=z_t)
    return PooledData(images.x, images.y, images.num_classes, images.name, pooled=z_i)


def slerp_embeddings(a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    """Spherical interpolation of unit vectors: a at alpha 0, b at 1, unit norm between (sec. 3.2)."""
    cos = (a * b).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7)
    theta = torch.acos(cos)
    return (torch.sin((1 - alpha) * theta) * a + torch.sin(alpha * theta) * b) / torch.sin(theta)


def text_diff(z_i: torch.Tensor, z_t_from: torch.Tensor, z_t_to: torch.Tensor, alpha: float) -> torch.Tensor:
    """DALL-E 2's text diff (sec. 3.3): z_d = normalise(z_t_to - z_t_from), the image embedding rotated toward it by
    slerp(z_i, z_d, alpha)."""
    z_d = torch.nn.functional.normalize(z_t_to - z_t_from, dim=-1)
    return slerp_embeddings(z_i, z_d.expand_as(z_i), alpha)


def unclip_record(rc, ds) -> dict:
    """What an unCLIP stage's checkpoint keeps: its section, the embedding size and the prior's data scale."""
    if rc.unclip is None:
        return {}
    dim = int(ds.pooled.shape[1])
    scale = prior_scale(dim) if rc.unclip.get("stage") == "prior" else 1.0
    return {"unclip": {**rc.unclip, "dim": dim, "scale": scale}}


@dataclass
class UnCLIP:
    """A decoder p(x | z_i), optionally its prior p(z_i | z_t), and the CLIP whose embeddings they model."""
    decoder: object
    prior: object
    clip: object

    @classmethod
    def open(cls, decoder_path, prior_path=None, device: str = "cpu") -> "UnCLIP":
        from ..models import load_model
        from .text import pretrained_clip
        decoder = load_model(decoder_path, device=device)
        _require_stage(decoder, "decoder", "DECODER")
        prior = None
        if prior_path is not None:
            prior = load_model(prior_path, device=device)
            _require_stage(prior, "prior", "--prior")
            if prior.record["unclip"]["clip"] != decoder.record["unclip"]["clip"]:
                raise ValueError(f"--prior: it models the embeddings of {prior.record['unclip']['clip']}, the decoder "
                                 f"those of {decoder.record['unclip']['clip']}")
        clip = pretrained_clip(decoder.record["unclip"]["clip"], "unclip.clip")
        return cls(decoder, prior, clip.__class__(clip.clip.to(device), clip.tokenizer, clip.shape, clip.record,
                                                  clip.folder))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The CLIP image embeddings z_i of images (unit vectors)."""
        return clip_embeddings(self.clip, images)[0]

    def text_embeddings(self, prompts) -> torch.Tensor:
        return clip_embeddings(self.clip, None, list(prompts))[1]

    def decode(self, z_i: torch.Tensor, *, seed: int = 0, w: Optional[float] = None, **how) -> torch.Tensor:
        """Images from image embeddings (sample i from noise seeded by (seed, i)); CFG weight w on the decoder."""
        from ..samplers import generate
        device = next(self.decoder.denoiser.parameters()).device
        denoiser = self.decoder.guided(w=w)[0]
        return generate(denoiser, len(z_i), self.decoder.shape, seed=seed, labels=Cond(pooled=z_i.to(device)),
                        **how).clamp(-1, 1)

    def image_embeddings(self, prompts, *, seed: int = 0, w: Optional[float] = None, **how) -> torch.Tensor:
        """z_i ~ p(z_i | z_t(prompt)) from the prior, back on the unit sphere."""
        from ..samplers import generate
        if self.prior is None:
            raise ValueError("--prior: text to image through unCLIP needs its prior (a run with unclip.stage prior)")
        device = next(self.prior.denoiser.parameters()).device
        z_t = self.text_embeddings(prompts).to(device)
        x = generate(self.prior.guided(w=w)[0], len(z_t), self.prior.shape, seed=seed, labels=Cond(pooled=z_t), **how)
        return torch.nn.functional.normalize(x.float(), dim=-1)

    def text_to_image(self, prompts, *, seed: int = 0, w_prior: Optional[float] = None,
                      w_decoder: Optional[float] = None, **how) -> torch.Tensor:
        """DALL-E 2's two stages: an image embedding from the prior, then an image from the decoder."""
        return self.decode(self.image_embeddings(prompts, seed=seed, w=w_prior, **how), seed=seed, w=w_decoder, **how)


def _require_stage(model, stage: str, flag: str) -> None:
    section = model.record.get("unclip")
    if not isinstance(section, dict) or section.get("stage") != stage:
        raise ValueError(f"{flag}: {model.folder} is not an unCLIP {stage} (a run with unclip.stage {stage})")
