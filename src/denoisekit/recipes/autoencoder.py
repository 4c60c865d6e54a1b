"""`denoisekit train-autoencoder`: the first stage of latent diffusion (Rombach et al. 2022), a KL-regularised
autoencoder trained by the same trainer into the same run-folder and checkpoint format as a diffusion model; its
latent normalisation is measured on the data at the end and stored in the final checkpoint, with a report
(reconstruction error, the reference classifier's accuracy on reconstructions, latent statistics, KL per latent
channel) and a picture of inputs beside their reconstructions."""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional

import torch

from ..config import require
from ..data import ArrayDataset
from ..images import save_picture
from ..nets.vae import AutoencoderKL, KLAutoencoder, LinearAutoencoder
from ..objectives.autoencoder import AutoencoderLoss, diagonal_kl
from ..train import Trainer
from ..utils import atomic_save
from .build import build_dataset, run_record, seeded, train_settings
from .config import build_section, check_section_keys, top_level
from .run import compatibility_check, run_folder, start_run

LATENT_NORMS = ("global", "channel")


@dataclass
class AutoencoderConfig:
    """One autoencoder run: data, the network (AutoencoderKL for images, LinearAutoencoder for vectors), the loss,
    the latent normalisation and the training settings."""
    data: str = "mnist"
    image_size: Optional[int] = None
    channels: Optional[int] = None
    net: dict = field(default_factory=dict)
    loss: dict = field(default_factory=dict)
    latent_norm: str = "global"  # one scale factor 1/std (latent diffusion), or per-channel mean and std
    train: dict = field(default_factory=lambda: {"lr": 1e-3, "warmup_steps": 0, "lr_schedule": "cosine"})

    @classmethod
    def from_dict(cls, d) -> "AutoencoderConfig":
        values = top_level(cls, d, "data: ..., net: ..., train: ...")
        base = cls()
        merged = {f.name: values.get(f.name, getattr(base, f.name)) for f in fields(cls)}
        merged["train"] = {**base.train, **values.get("train", {})}
        ac = cls(**merged)
        ac.check()
        return ac

    def check(self) -> None:
        require(self.image_size is None or self.image_size >= 1, "image_size", "a positive integer or null",
                self.image_size)
        require(self.channels in (None, 1, 3), "channels", "1 (grey), 3 (RGB) or null", self.channels)
        require(self.latent_norm in LATENT_NORMS, "latent_norm", "'global' (one scale factor) or 'channel'",
                self.latent_norm)
        check_section_keys("net", self.net, AutoencoderKL, LinearAutoencoder,
                           {"in_channels": "set from the data", "dim": "set from the data"})
        build_section("loss", AutoencoderLoss, self.loss)
        from ..train import TrainConfig
        build_section("train", TrainConfig, self.train, reserved={"use_labels": "an autoencoder reads no labels"})

    def as_dict(self) -> dict:
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}


def build_autoencoder(ac: AutoencoderConfig, ds: ArrayDataset) -> KLAutoencoder:
    """The network for the data: convolutional for images, linear for vectors."""
    if ds.is_image:
        return build_section("net", AutoencoderKL, ac.net, in_channels=ds.x.shape[1])
    return build_section("net", LinearAutoencoder, ac.net, dim=ds.x.shape[1])


def prepare_autoencoder(ac: AutoencoderConfig):
    """(data, the seeded autoencoder, its loss, the training settings), everything checked before any work."""
    ds = build_dataset(ac)
    tc = train_settings(ac, ds, use_labels=False)
    model = seeded(tc.seed, lambda: build_autoencoder(ac, ds))
    return ds, model, build_section("loss", AutoencoderLoss, ac.loss), tc


@torch.no_grad()
def posterior(model: KLAutoencoder, x: torch.Tensor, batch: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, logvar) of q(z | x) for every example, batched on the model's device."""
    device = next(model.parameters()).device
    out = [model.encode(x[i:i + batch].to(device)) for i in range(0, len(x), batch)]
    return torch.cat([m.cpu() for m, _ in out]), torch.cat([lv.cpu() for _, lv in out])


@torch.no_grad()
def reconstruct(model: KLAutoencoder, x: torch.Tensor, mean=None, batch: int = 500) -> torch.Tensor:
    """decode(posterior mean) for every example (`mean`: the posterior means, when already computed): the
    deterministic reconstruction a latent model decodes through."""
    device = next(model.parameters()).device
    size = x.shape[-2:] if x.ndim == 4 else None
    mean = posterior(model, x, batch)[0] if mean is None else mean
    return torch.cat([model.decode(mean[i:i + batch].to(device), size).cpu() for i in range(0, len(x), batch)])


def autoencoder_report(model: KLAutoencoder, ds: ArrayDataset, stats: dict, progress: bool = False) -> dict:
    """Reconstruction error (L1, MSE, PSNR for data in [-1, 1]), the reference classifier's accuracy on the
    reconstructions beside its accuracy on the data (images with labels), KL per latent channel, latent statistics."""
    mean, logvar = posterior(model, ds.x)
    x_hat = reconstruct(model, ds.x, mean).clamp(-1, 1)
    mse = float((x_hat - ds.x).square().mean())
    report = {"examples": len(ds), "l1": float((x_hat - ds.x).abs().mean()), "mse": mse,
              "psnr_db": float(10 * torch.log10(torch.tensor(4.0 / max(mse, 1e-12)))),
              "latent_shape": list(model.latent_shape(ds.x.shape[1:])),
              "kl_per_channel": diagonal_kl(mean, logvar).transpose(0, 1).reshape(mean.shape[1], -1).mean(1).tolist(),
              "latent": stats}
    if ds.is_image and ds.y is not None and ds.num_classes:
        from ..eval.classifier import reference_classifier
        clf = reference_classifier(ds, progress=progress)
        on = lambda x: float((clf.features_and_logits(x)[1].argmax(1) == ds.y).float().mean())  # noqa: E731
        report["classifier_accuracy"] = {"data": on(ds.x), "reconstructions": on(x_hat)}
    return report


def finish_autoencoder(trainer: Trainer, ds: ArrayDataset, ac: AutoencoderConfig, out: Path) -> dict:
    """Measure the latent normalisation on the data with the EMA weights, store it in both weight sets and rewrite the
    final checkpoint; write report.json and reconstructions.png; returns the report."""
    ema = trainer.ema.model
    stats = ema.set_latent_norm(posterior(ema, ds.x)[0], per_channel=ac.latent_norm == "channel")
    trainer.model.latent_shift.copy_(ema.latent_shift), trainer.model.latent_scale.copy_(ema.latent_scale)
    trainer.save()
    report = {"step": trainer.step, **autoencoder_report(ema, ds, stats, progress=trainer.cfg.progress)}
    atomic_save(out / "report.json", lambda p: Path(p).write_text(json.dumps(report, indent=2)))
    if ds.is_image:
        x = ds.x[:16]
        pairs = torch.stack([x, reconstruct(ema, x).clamp(-1, 1)], 1).reshape(-1, *x.shape[1:])
        save_picture(pairs, out / "reconstructions.png", nrow=8, scale=2)
    return report


def train_autoencoder_run(ac: AutoencoderConfig, out: Path, resume: bool = True, prepared=None) -> Path:
    """Train the autoencoder per the config into run folder `out`, then measure its latent normalisation."""
    ds, model, loss, tc = prepared or prepare_autoencoder(ac)
    out = run_folder(out)
    record = {**run_record(ac, ds, loss), "kind": "autoencoder"}
    trainer = Trainer(model, loss, ds, out, tc, config=record)
    start_run(trainer, ac.as_dict(), out, resume, compatibility_check(model, loss, record, out))
    if trainer.rank == 0:
        n = sum(p.numel() for p in model.parameters())
        print(f"training a {type(model).__name__} ({n:,} parameters, latent {list(model.latent_shape(ds.x.shape[1:]))})"
              f" on {ds.name!r} ({len(ds)} x {list(ds.x.shape[1:])}): {tc.steps} steps of batch {tc.batch_size} "
              f"-> {out}")
    trainer.train()
    if trainer.rank == 0:
        r = finish_autoencoder(trainer, ds, ac, out)
        acc = r.get("classifier_accuracy")
        print(f"reconstruction: L1 {r['l1']:.4f}, PSNR {r['psnr_db']:.1f} dB"
              + (f", classifier accuracy {acc['reconstructions']:.3f} (data {acc['data']:.3f})" if acc else "")
              + f"; latent scale {', '.join(f'{s:.3g}' for s in r['latent']['scale'])}")
    return out
