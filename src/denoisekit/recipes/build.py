"""What a run config builds once the data is loaded: the data set, the seeded network inside its denoiser, the loss,
the training settings and the record a checkpoint keeps."""
from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from ..cascade import NoiseAugmented, SuperResolutionData
from ..config import build, require
from ..data import BUILTIN, ArrayDataset, load_dataset
from ..denoiser import Denoiser
from ..processes import CLDProcess
from ..images import save_row_strip
from ..nets import MLP, EncoderDiscriminator, UNet
from ..objectives import (ADVERSARIAL_OBJECTIVES, BOUND_OBJECTIVES, DDGAN, ENERGY_OBJECTIVES, LATENT_OBJECTIVES,
                          LatentScoreModel, RecoveryEBM)
from ..train import TrainConfig
from ..utils import check_device
from .latent import OpenedAutoencoder, latent_dataset, latent_record, open_for
from .text import adopt_encoder, captioned, encoder_arguments, settings_of, text_record, tokenize_dataset
from .unclip import PooledData, UnCLIPSettings, unclip_dataset, unclip_record
from .config import (RunConfig, build_loss, build_process, build_section, build_super_resolution,
                     learns_variance, make_denoiser)


def build_dataset(rc: RunConfig) -> ArrayDataset:
    """The run's data set; image_size and channels must fit it."""
    if getattr(rc, "stream", False):  # a run config's option (the autoencoder and classifier configs load whole)
        ds = stream_dataset(rc)
    else:
        ds = load_dataset(rc.data, image_size=rc.image_size, channels=rc.channels)
    if not ds.is_image:
        for key in ("image_size", "channels"):
            require(getattr(rc, key) is None, key, f"null: the data set {ds.name!r} holds vectors, not images",
                    getattr(rc, key))
    elif rc.channels is not None and rc.channels != ds.x.shape[1]:
        raise ValueError(f"channels: the data set {ds.name!r} has {ds.x.shape[1]} channel(s); channels applies to "
                         f"image folders only")
    return ds


def stream_dataset(rc: RunConfig) -> ArrayDataset:
    """The run's image folder, streamed (files read as batches are needed); a one-line error for other data."""
    from ..streaming import stream_image_folder
    path = Path(os.path.expanduser(rc.data))
    if not path.is_dir():
        raise ValueError(f"stream: only an image folder is read batch by batch; {rc.data!r} is "
                         f"{'a built-in data set' if rc.data in BUILTIN else 'not a folder'}, loaded whole (remove "
                         f"stream)")
    if rc.latent is not None or rc.super_resolution is not None:
        raise ValueError(f"stream: a {'latent' if rc.latent is not None else 'super-resolution'} run encodes or "
                         f"downsizes its whole data set first; remove stream")
    return stream_image_folder(path, rc.image_size, rc.channels)


def build_denoiser(rc: RunConfig, ds: ArrayDataset) -> Denoiser:
    """The network (U-Net for images, MLP for vectors) inside a denoiser."""
    num_classes = ds.num_classes if rc.class_cond else None
    if rc.class_cond and not num_classes:
        raise ValueError(f"class_cond: the data set {ds.name!r} has no labels")
    if rc.objective in ENERGY_OBJECTIVES:
        return build_energy(rc, ds, num_classes)
    learned = learns_variance(rc)
    widths = 2 if learned else 1  # learned variance: the prediction and v, split by the denoiser
    process = build_process(rc.process)
    c_in = process.state_shape(ds.x.shape[1:])[0]  # CLD reads the state (x, v): twice the data's channels
    pooled = {"pooled_dim": ds.pooled.shape[1]} if isinstance(ds, PooledData) else {}  # unCLIP's CLIP embeddings
    if ds.is_image:
        sr = {"cond_channels": ds.x.shape[1], "augment": True} if isinstance(ds, SuperResolutionData) else {}
        text = encoder_arguments(ds, settings_of(rc.text)) if rc.text_cond else None
        net = build_section("net", UNet, rc.net, in_channels=c_in, num_classes=num_classes,
                            out_channels=widths * ds.x.shape[1], **sr, **({"text": text} if text else {}), **pooled)
    else:
        net = build_section("net", MLP, rc.net, dim=c_in, num_classes=num_classes, out_dim=widths * ds.x.shape[1],
                            **pooled)
    if isinstance(process, CLDProcess):
        return make_denoiser(rc, net, process)
    alpha_end = float(process.alpha(torch.tensor(process.t_max, dtype=torch.float64)))
    if rc.objective in BOUND_OBJECTIVES and rc.prediction in ("eps", "score") and alpha_end == 0:
        raise ValueError(f"objective: L_vlb's last term needs x0 = (x_t - sigma eps) / alpha from the "
                         f"{rc.prediction}-prediction, and this schedule ends at alpha = 0; use a larger process.T, "
                         f"another schedule, or prediction v or x0")
    if ds.is_image and rc.prediction == "eps" and rc.clip_x0 is None and alpha_end < 1e-3:
        warnings.warn(f"clip_x0: the noise schedule ends at alpha = {alpha_end:.1e}, where x0 = (x_t - sigma eps) / "
                      f"alpha from an eps prediction is unbounded; set clip_x0: 1.0 (as improved-diffusion's samplers "
                      f"do) for images in [-1, 1]", stacklevel=2)
    denoiser = make_denoiser(rc, net, process, ds.x.shape[1:])
    if rc.objective in ADVERSARIAL_OBJECTIVES:
        return DDGAN(denoiser, build_discriminator(rc, ds, num_classes))
    return denoiser


def build_joint(rc: RunConfig, images: ArrayDataset) -> LatentScoreModel:
    """LSGM's model (Vahdat et al. 2021): the VAE of the autoencoder run `latent` (its weights, or fresh ones of its
    architecture for latent_init scratch) and the run config's score prior on the shape of its latents."""
    vae = open_for(rc.latent, images).model
    if rc.latent_init == "scratch":
        vae = build(vae.config())
    with torch.no_grad():
        latent_shape = tuple(vae.normalised_posterior(images.x[:1])[0].shape[1:])
    prior = build_denoiser(rc, ArrayDataset(torch.zeros(1, *latent_shape), name="latents"))
    return LatentScoreModel(vae.train(), prior, list(images.x.shape[1:]), list(latent_shape))


def build_discriminator(rc: RunConfig, ds: ArrayDataset, num_classes):
    """A DDGAN's D(x_{t-1}, x_t, t): the encoder discriminator on the pair stacked on channels (images), or an MLP on
    the pair's concatenation (vectors), with the class label for a class-conditional GAN."""
    if ds.is_image:
        return build_section("discriminator", EncoderDiscriminator, rc.discriminator,
                             in_channels=2 * ds.x.shape[1], num_classes=num_classes)
    return build_section("discriminator", MLP, rc.discriminator, dim=2 * ds.x.shape[1], out_dim=1,
                         num_classes=num_classes)


def build_energy(rc: RunConfig, ds: ArrayDataset, num_classes) -> RecoveryEBM:
    """A recovery-likelihood EBM: one energy network f(x, t) -> (B, 1) over the levels (the encoder for images, an MLP
    for vectors), with the loss's Langevin chain to sample with."""
    if ds.is_image:
        net = build_section("net", EncoderDiscriminator, rc.net, in_channels=ds.x.shape[1], num_classes=num_classes)
    else:
        net = build_section("net", MLP, rc.net, dim=ds.x.shape[1], out_dim=1, num_classes=num_classes)
    chain = build_loss(rc).chain
    return RecoveryEBM(net, build_process(rc.process), chain.steps, chain.b)


def forward_process_picture(ds: ArrayDataset, process, path, n: int = 8, columns: int = 10, seed: int = 0):
    """x_t for a few data points at evenly spaced t: the forward process q(x_t | x_0)."""
    g = torch.Generator().manual_seed(seed)
    x0 = ds.x[torch.randperm(len(ds), generator=g)[: (n if ds.is_image else 2000)]]
    ts = torch.linspace(process.t_min, process.t_max, columns, dtype=torch.float64)
    frames = [process.data_part(process.perturb(x0, t.expand(len(x0)), g)) for t in ts]
    return save_row_strip(frames, path, scale=2 if ds.is_image else 1)


def run_record(rc: RunConfig, ds: ArrayDataset, loss) -> dict:
    """What a checkpoint records beside the model: the run config, the loss and the data's name, shape and content."""
    return {"loss": loss.config(), "run": rc.as_dict(),
            "data": {"name": ds.name, "shape": list(ds.x.shape[1:]), "num_classes": ds.num_classes,
                     "size": len(ds), "fingerprint": data_fingerprint(ds)}}


def data_fingerprint(ds: ArrayDataset) -> str:
    """A short hash of the data set's content (examples and labels): a run's record of what it was trained on."""
    content = ds.x.fingerprint() if hasattr(ds.x, "fingerprint") else ds.x.contiguous().numpy()
    digest = hashlib.sha256(content.encode() if isinstance(content, str) else content.tobytes())
    if ds.y is not None:
        digest.update(ds.y.numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass
class Run:
    """Everything a run config builds, before anything is written: data (the latents of a latent model), denoiser,
    loss, training settings; for a latent model also its first stage and the images it encodes."""
    rc: RunConfig
    ds: ArrayDataset
    denoiser: Denoiser
    loss: Callable  # one of OBJECTIVES
    tc: TrainConfig
    codec: Optional[OpenedAutoencoder] = None
    images: Optional[ArrayDataset] = None

    @property
    def joint(self) -> Optional[LatentScoreModel]:
        """LSGM's VAE and prior, trained together (objective lsgm), else None."""
        return self.denoiser if isinstance(self.denoiser, LatentScoreModel) else None

    @property
    def record(self) -> dict:
        if self.joint is not None:  # the first stage lives inside the model: its run, data shape and latent shape
            return {**run_record(self.rc, self.ds, self.loss),
                    "latent": {"autoencoder": self.rc.latent, "data_shape": list(self.joint.data_shape),
                               "shape": list(self.joint.latent_shape), "joint": True, "init": self.rc.latent_init}}
        return {**run_record(self.rc, self.ds, self.loss), **latent_record(self.codec), **text_record(self.ds),
                **unclip_record(self.rc, self.ds)}

    @property
    def data(self) -> ArrayDataset:
        """The data the samples are compared with: the images, also for a latent model."""
        return self.images if self.images is not None else self.ds

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Samples in data space: through the first stage's decoder for a latent model."""
        if self.codec is None:
            return x
        return self.codec.model.from_latent(x.to(next(self.codec.model.parameters()).device),
                                            self.codec.data_shape[-2:] if len(self.codec.data_shape) == 3 else None)

    def summary(self) -> str:
        if self.joint is not None:
            vae, prior = self.joint.vae, self.joint.prior
            count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
            mixed = ", mixed score" if prior.mixed_score is not None else ""
            return (f"LSGM: a {type(vae).__name__} ({count(vae):,} parameters, {self.rc.latent_init} from "
                    f"{self.rc.latent}) and a {type(prior.net).__name__} score prior ({count(prior):,} parameters, "
                    f"{self.rc.prediction}-prediction{mixed}) on its {list(self.joint.latent_shape)} latents, trained "
                    f"end to end on {self.ds.name!r} ({len(self.ds)} x {list(self.ds.x.shape[1:])}): "
                    f"{self.tc.steps} steps of batch {self.tc.batch_size}, lr {self.tc.lr:g}, device "
                    f"{check_device(self.tc.device).type}")
        n = sum(p.numel() for p in self.denoiser.parameters())
        net = getattr(self.denoiser, "generator", self.denoiser).net
        kind = f"DDGAN of a {type(net).__name__} generator" if net is not getattr(self.denoiser, "net", None) \
            else f"recovery-likelihood EBM of a {type(net).__name__}" if isinstance(self.denoiser, RecoveryEBM) \
            else type(net).__name__
        what = "energy" if isinstance(self.denoiser, RecoveryEBM) else f"{self.rc.prediction}-prediction"
        where = f" in the {list(self.ds.x.shape[1:])} latents of {self.codec.folder}" if self.codec else \
            f", super-resolved from {self.rc.super_resolution['low_size']}px" if self.rc.super_resolution else ""
        return (f"{kind} ({n:,} parameters, {what}) on "
                f"{self.ds.name!r} ({len(self.data)} x {list(self.data.x.shape[1:])}{where}"
                f"{', class-conditional' if self.rc.class_cond else ''}"
                f"{', text-conditional' if self.rc.text_cond else ''}): {self.tc.steps} steps of batch "
                f"{self.tc.batch_size}, lr {self.tc.lr:g}, device {check_device(self.tc.device).type}")


def prepare_run(rc: RunConfig) -> Run:
    """Load the data and build the network (seeded by train.seed, so the same config gives the same weights)."""
    images = build_dataset(rc)
    if rc.objective in LATENT_OBJECTIVES:  # LSGM: the VAE trains with the prior, on the images themselves
        tc = train_settings(rc, images, use_labels=False)
        return Run(rc, images, seeded(tc.seed, lambda: build_joint(rc, images)), build_loss(rc), tc)
    if rc.text_cond:  # the captions' tokenizer, and their tokens as the conditioning
        images = captioned(images, rc.data)
        tokenize_dataset(images, settings_of(rc.text))
    if rc.unclip is not None:  # the CLIP embeddings: a prior's data and conditioning, or a decoder's conditioning
        ds = unclip_dataset(build_section("unclip", UnCLIPSettings, rc.unclip), captioned(images, rc.data))
        tc = train_settings(rc, ds, use_labels=True)
        return Run(rc, ds, seeded(tc.seed, lambda: build_denoiser(rc, ds)), build_loss(rc), tc)
    codec, ds = latent_dataset(rc.latent, images) if rc.latent is not None else (None, images)
    sr, loss = build_super_resolution(rc), build_loss(rc)
    if sr is not None:  # a cascade's stage: conditioned on its images' low-resolution versions, noise-augmented
        ds, loss = SuperResolutionData.of(images, sr, labelled=rc.class_cond), NoiseAugmented(loss, sr.aug_max)
    tc = train_settings(rc, ds, use_labels=rc.class_cond or rc.text_cond or sr is not None)
    denoiser = seeded(tc.seed, lambda: build_denoiser(rc, ds))
    if rc.text_cond:
        adopt_encoder(denoiser, settings_of(rc.text))
    return Run(rc, ds, denoiser, loss, tc, codec, images if codec is not None else None)


def train_settings(rc: RunConfig, ds: ArrayDataset, use_labels: bool) -> TrainConfig:
    """The train section as a TrainConfig, checked against the data set (a batch must fit in it)."""
    tc = build_section("train", TrainConfig, {**rc.train, "use_labels": use_labels})
    if tc.batch_size > len(ds):
        raise ValueError(f"train.batch_size: {tc.batch_size} is larger than the data set ({len(ds)} examples)")
    return tc


def seeded(seed: int, build):
    """build() under torch.manual_seed(seed) in a forked RNG: the same seed gives the same weights, whatever ran before."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


# What a resumed run must share with its checkpoints; train, sample and eval settings may change between sessions.
