"""Latent diffusion (Rombach et al. 2022): `denoisekit train --latent AE_RUN` trains any process, objective and
prediction on a first stage's normalised latents, encoded once; the codec's weights go into every checkpoint so the
model opener decodes without the autoencoder's run folder."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from ..config import build
from ..data import ArrayDataset
from ..nets.vae import KLAutoencoder
from ..train import find_checkpoint, load_config, load_weights
from ..train.checkpoint import load_matching

CODEC_WEIGHTS = "codec.safetensors"  # the first stage's weights (with its latent normalisation) in a checkpoint


@dataclass
class OpenedAutoencoder:
    """A trained first stage and the data it was trained on."""
    model: KLAutoencoder
    data_shape: tuple
    record: dict
    folder: Path


def open_autoencoder(path, flag: str = "--latent", device: str = "cpu") -> OpenedAutoencoder:
    """The EMA weights of a `denoisekit train-autoencoder` run, with one-line errors for anything else."""
    p = Path(path)
    if not p.exists():
        raise ValueError(f"{flag}: no such autoencoder run {p}; train one with 'denoisekit train-autoencoder'")
    try:
        folder = find_checkpoint(p)
        record = load_config(folder)
    except (ValueError, OSError) as e:
        raise ValueError(f"{flag}: {p} is not an autoencoder run ({str(e).splitlines()[0]})") from None
    model_cfg = record.get("model")
    if record.get("kind") != "autoencoder" or not isinstance(model_cfg, dict):
        raise ValueError(f"{flag}: {p} is not an autoencoder run (one made by 'denoisekit train-autoencoder')")
    model = build(model_cfg)
    load_matching(model, load_weights(folder, ema=True), folder)
    return OpenedAutoencoder(model.to(device).eval(), tuple(record["data"]["shape"]), record, folder)


@torch.no_grad()
def encode_dataset(codec, ds: ArrayDataset, batch: int = 500) -> ArrayDataset:
    """The data set as the diffusion model sees it: every example's normalised posterior mean, labels kept."""
    z = torch.cat([codec.to_latent(ds.x[i:i + batch]) for i in range(0, len(ds), batch)])
    return ArrayDataset(z.float().contiguous(), ds.y, ds.num_classes, ds.name)


def open_for(path: str, ds: ArrayDataset) -> OpenedAutoencoder:
    """The first stage of `path` for the data set ds; one-line errors for a missing run or another data shape."""
    ae = open_autoencoder(path, flag="latent")
    if tuple(ae.data_shape) != tuple(ds.x.shape[1:]):
        raise ValueError(f"latent: the autoencoder {path} was trained on data of shape {list(ae.data_shape)}, and "
                         f"{ds.name!r} holds {list(ds.x.shape[1:])}; train one on this data (or set image_size to "
                         f"match)")
    return ae


def latent_dataset(path: str, ds: ArrayDataset) -> tuple[OpenedAutoencoder, ArrayDataset]:
    """(the first stage of `path`, the data in its latents)."""
    ae = open_for(path, ds)
    return ae, encode_dataset(ae.model, ds)


def latent_record(ae: Optional[OpenedAutoencoder]) -> dict:
    """What a latent model's checkpoints record of its first stage (the codec is rebuilt from `codec`)."""
    if ae is None:
        return {}
    return {"latent": {"autoencoder": str(ae.folder), "data_shape": list(ae.data_shape), "codec": ae.model.config(),
                       "data_fingerprint": ae.record.get("data", {}).get("fingerprint")}}


def codec_tensors(ae: Optional[OpenedAutoencoder]) -> dict:
    """{file name: tensors} the trainer attaches to every checkpoint of a latent model."""
    if ae is None:
        return {}
    return {CODEC_WEIGHTS: {k: v.detach().cpu().contiguous() for k, v in ae.model.state_dict().items()}}
