"""`denoisekit train-classifier`: the noisy classifier p_phi(y | x_t, t) of classifier guidance, trained by the same
trainer into the same run-folder and checkpoint format as a diffusion model."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..data import ArrayDataset
from ..guidance import NoisyClassifier
from ..nets import EncoderClassifier
from ..objectives import ClassifierLoss
from ..processes import DiscreteVP
from ..train import TrainConfig, Trainer
from ..utils import atomic_save
from .build import build_dataset, run_record, seeded, train_settings
from .config import RunConfig, build_process, build_section
from .run import compatibility_check, run_folder, start_run

NOISE_LEVELS = (0, 250, 500, 750, 999)  # the times the end-of-run accuracy report uses


def prepare_classifier(rc: RunConfig) -> tuple[ArrayDataset, NoisyClassifier, ClassifierLoss, TrainConfig]:
    """Data (labelled images), the classifier (seeded by train.seed), its loss and the training settings."""
    ds = build_dataset(rc)
    if not ds.is_image or ds.y is None:
        raise ValueError(f"data: train-classifier needs labelled images; {ds.name!r} holds "
                         f"{'unlabelled images' if ds.is_image else 'vectors'}")
    tc = train_settings(rc, ds, use_labels=True)
    net = seeded(tc.seed, lambda: build_section("net", EncoderClassifier, rc.net, in_channels=ds.x.shape[1],
                                                num_classes=ds.num_classes))
    process = build_process(rc.process)
    if not isinstance(process, DiscreteVP):
        raise ValueError("process.kind: train-classifier supports the ddpm process only")
    classifier = NoisyClassifier(net, process)
    return ds, classifier, build_section("loss", ClassifierLoss, rc.loss), tc


@torch.no_grad()
def accuracy_by_noise_level(classifier: NoisyClassifier, ds: ArrayDataset, n: int = 1000, seed: int = 0) -> dict:
    """Accuracy of p_phi(y | x_t, t) on n examples noised to each of NOISE_LEVELS (clipped to the process's range)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(ds), generator=g)[:n]
    device = next(classifier.parameters()).device
    x0, y = ds.x[idx].to(device), ds.y[idx].to(device)
    out = {}
    for t in NOISE_LEVELS:
        t = min(t, int(classifier.process.t_max))
        tt = torch.full((len(x0),), float(t), dtype=torch.float64, device=device)
        x_t = classifier.process.q_sample(x0, tt, torch.randn(x0.shape, generator=g).to(device))
        out[f"t={t}"] = float((classifier(x_t, tt).argmax(1) == y).float().mean())
    return out


def train_classifier_run(rc: RunConfig, out: Path, resume: bool = True, prepared=None) -> Path:
    """Train a noisy classifier per the config (its net section takes the U-Net encoder's settings) into `out`."""
    ds, classifier, loss, tc = prepared or prepare_classifier(rc)
    out = run_folder(out)
    record = {**run_record(rc, ds, loss), "kind": "noisy classifier"}

    def report(ema_model, step):
        acc = accuracy_by_noise_level(ema_model, ds)
        atomic_save(out / "accuracy.json", lambda p: Path(p).write_text(json.dumps({"step": step, **acc}, indent=2)))
        print("accuracy of p(y | x_t, t) on training images, by t: " + ", ".join(f"{k} {v:.3f}" for k, v in acc.items()))

    trainer = Trainer(classifier, loss, ds, out, tc, config=record, sample_fn=report)
    start_run(trainer, rc.as_dict(), out, resume, compatibility_check(classifier, loss, record, out))
    if trainer.rank == 0:
        n = sum(p.numel() for p in classifier.parameters())
        print(f"training a noisy classifier ({n:,} parameters) on {ds.name!r} ({len(ds)} x {list(ds.x.shape[1:])}, "
              f"{ds.num_classes} classes): {tc.steps} steps of batch {tc.batch_size} -> {out}")
    trainer.train()
    return out
