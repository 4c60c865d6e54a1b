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
    """Accuracy of p(y | x_t, t) on training images.

    On n examples noised to each of NOISE_LEVELS (clipped to the process's range)."""
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


def train_guide_run(rc: RunConfig, out: Path, resume: bool, prepared, record: dict, report_file: str,
                    report, what: str) -> Path:
    """Train a guide (a noisy classifier, a noised CLIP) into `out` with the diffusion trainer; at the end (and
    every sample_every steps) `report(model, data) -> {name: number}` goes to `report_file` and one printed line."""
    ds, module, loss, tc = prepared
    out = run_folder(out)

    def write_report(ema_model, step):
        numbers = report(ema_model, ds)
        atomic_save(out / report_file, lambda p: Path(p).write_text(json.dumps({"step": step, **numbers}, indent=2)))
        print(f"{report.__doc__.splitlines()[0].rstrip('.')}, by t: "
              + ", ".join(f"{k} {v:.3f}" for k, v in numbers.items()))

    trainer = Trainer(module, loss, ds, out, tc, config=record, sample_fn=write_report)
    start_run(trainer, rc.as_dict(), out, resume, compatibility_check(module, loss, record, out))
    if trainer.rank == 0:
        n = sum(p.numel() for p in module.parameters())
        print(f"training {what} ({n:,} parameters) on {ds.name!r} ({len(ds)} x {list(ds.x.shape[1:])}): {tc.steps} "
              f"steps of batch {tc.batch_size} -> {out}")
    trainer.train()
    return out


def train_classifier_run(rc: RunConfig, out: Path, resume: bool = True, prepared=None) -> Path:
    """Train a noisy classifier per the config (its net section takes the U-Net encoder's settings) into `out`."""
    prepared = prepared or prepare_classifier(rc)
    ds, _, loss, _ = prepared
    return train_guide_run(rc, out, resume, prepared, {**run_record(rc, ds, loss), "kind": "noisy classifier"},
                           "accuracy.json", accuracy_by_noise_level, f"a noisy classifier of {ds.num_classes} classes")
