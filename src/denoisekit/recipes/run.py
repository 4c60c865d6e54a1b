"""`denoisekit train`: a run folder trained from a run config, resumed only from checkpoints of the same set-up."""
from __future__ import annotations

import inspect
import shutil
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
import yaml

from ..conditioning import Cond
from ..config import REGISTRY, encode_value
from ..cascade import SuperResolutionData, upscale
from ..images import save_picture, save_row_strip
from ..samplers import balanced_labels, generate
from ..train import Trainer
from ..train.trainer import IncompatibleRun
from ..utils import atomic_save
from .build import Run, forward_process_picture, prepare_run
from .config import RunConfig, build_super_resolution
from .latent import codec_tensors


IDENTITY = ("model", "loss", "data")


def _differences(old, new, prefix: str = "") -> list[str]:
    """'key: old -> new' for every leaf where two nested configs differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            if k == "clip_x0":  # a sampling-time bound, free to change
                continue
            out += _differences(old.get(k), new.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)) and list(old) == list(new):
        return []
    return [] if old == new else [f"{prefix}: {old!r} -> {new!r}"]


def with_defaults(config):
    """A recorded config with the defaults of arguments added since it was written (so older checkpoints compare)."""
    if isinstance(config, list):
        return [with_defaults(v) for v in config]
    if not isinstance(config, dict):
        return config
    out = {k: with_defaults(v) for k, v in config.items()}
    cls = REGISTRY.get(config.get("class")) if isinstance(config.get("class"), str) else None
    if cls is not None:
        for name, p in inspect.signature(cls).parameters.items():
            if name not in out and p.default is not inspect.Parameter.empty:
                out[name] = encode_value(p.default)
    return out


def compatibility_check(model, loss, record: dict, out: Path):
    """check(config) for Trainer.resume: refuse a checkpoint made with another data set, network, process or loss."""
    new = {"model": model.config(), "loss": loss.config(), "data": record["data"]}

    def check(config: dict) -> None:
        old = {k: with_defaults(config.get(k)) for k in IDENTITY}
        if old["data"] is not None and "fingerprint" not in old["data"]:  # recorded before fingerprints
            old["data"] = {**old["data"], **{k: new["data"][k] for k in ("fingerprint", "size")}}
        diff = _differences(old, new)
        if diff:
            raise IncompatibleRun(f"resume: {out} was trained with another set-up ({'; '.join(diff[:4])}"
                                  f"{'; ...' if len(diff) > 4 else ''}); use another --out, or --no-resume to start "
                                  f"this folder afresh")
    return check


# What `train` writes into a run folder; --no-resume removes exactly these before starting afresh.
RUN_OUTPUTS = ("checkpoints", "samples", "tensorboard", "metrics.csv", "eval.csv", "run.yaml", "forward_process.png")


def clear_run_outputs(out: Path) -> list[str]:
    """Remove a previous run's outputs from `out` (and nothing else); returns what was removed."""
    return remove_outputs(out, RUN_OUTPUTS)


def remove_outputs(out: Path, names) -> list[str]:
    """Remove the files and folders `names` from `out`; returns those that were there."""
    removed = []
    for name in names:
        p = Path(out) / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
        else:
            continue
        removed.append(name)
    return removed


def run_folder(out) -> Path:
    """The run folder `out` as a Path, after a one-line error if it is a file."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: {out} is a file; expected a run folder")
    return out


def train_run(rc: RunConfig, out: Path, resume: bool = True, run: Optional[Run] = None) -> Path:
    """Train per the config into run folder `out`; returns the run folder.

    Nothing is written until the config is valid and the folder's checkpoints (if resuming) are compatible."""
    run = run or prepare_run(rc)
    ds, denoiser, loss, tc = run.ds, run.denoiser, run.loss, run.tc
    out = run_folder(out)
    shape, data = tuple(ds.x.shape[1:]), run.data
    ds_sr = build_super_resolution(rc)

    def draw(ema_model, options: dict, n: int) -> torch.Tensor:
        """Samples in data space for a picture or an evaluation, with balanced labels for a class-conditional model
        (n captions spread over the data set for a text-conditional one); a super-resolution stage upscales the first n images' low-resolution versions."""
        device = next(ema_model.parameters()).device
        labels = balanced_labels(n, ds.num_classes if rc.class_cond else None, device)
        if rc.text_cond:  # the captions of the first n images
            labels = Cond(tokens=ds.tokens[torch.arange(n) * len(ds) // n].to(device))
        if rc.unclip is not None:  # embeddings spread over the data set
            labels = Cond(pooled=ds.pooled[torch.arange(n) * len(ds) // n].to(device))
        ema_model = getattr(ema_model, "generator", ema_model)  # a DDGAN samples with its generator
        how = dict(steps=options["steps"], sampler=options["sampler"], schedule=options["schedule"],
                   **options["options"])
        if run.joint is not None:  # LSGM: the prior's latents through the decoder
            return ema_model.decode(generate(ema_model.prior, n, ema_model.latent_shape, seed=options["seed"], **how))
        if isinstance(ds, SuperResolutionData):
            n = min(n, len(ds))
            own = Cond(tokens=ds.tokens[:n].to(device)) if rc.text_cond else \
                ds.y[:n].to(device) if rc.class_cond else None  # the first n images' captions or labels
            return upscale(ema_model, ds.low[:n].to(device), shape[1:], aug_level=ds_sr.aug_level,
                           seed=options["seed"], labels=own, generate_kwargs=how)
        return run.decode(generate(ema_model, n, shape, seed=options["seed"], labels=labels, **how))

    def sample_fn(ema_model, step):
        x = draw(ema_model, rc.sample, rc.sample["n"] if data.is_image else 2000)
        path = out / "samples" / f"step-{step:07d}.png"
        if isinstance(ds, SuperResolutionData):  # one row per image: low resolution | super-resolved | real
            k = min(16, len(x))
            save_row_strip([F.interpolate(ds.low[:k], size=shape[1:]), x[:k].cpu(), ds.x[:k]], path, scale=2)
        else:
            save_picture(x, path, scale=2 if data.is_image else 1)

    evaluator = []  # built at the first evaluation, so runs that never evaluate never train a classifier

    def eval_fn(ema_model, step):
        from ..eval import Evaluator
        if not evaluator:
            evaluator.append(Evaluator(data, device=next(ema_model.parameters()).device, progress=tc.progress))
        return evaluator[0].evaluate(draw(ema_model, rc.eval, rc.eval["n"]).cpu())

    trainer = Trainer(denoiser, loss, ds, out, tc, config=run.record, sample_fn=sample_fn, eval_fn=eval_fn,
                      attachments=codec_tensors(run.codec))
    start_run(trainer, rc.as_dict(), out, resume, compatibility_check(denoiser, loss, run.record, out))
    if trainer.rank == 0:
        if run.codec is None and ds_sr is None and run.joint is None:  # noised latents (an SR stage's x_t): no picture
            forward_process_picture(ds, denoiser.process, out / "forward_process.png")
        print(f"training {run.summary()} -> {out}")
    trainer.train()
    return out


def start_run(trainer: Trainer, settings: dict, out: Path, resume: bool, check) -> None:
    """Resume (refusing another set-up) or clear a previous run's outputs; then record the settings in run.yaml."""
    if resume and trainer.resume(check=check):
        print(f"resuming {out} at step {trainer.step}")
    elif not resume and trainer.rank == 0:
        removed = clear_run_outputs(out)
        if removed:
            print(f"--no-resume: removed the previous run's {', '.join(removed)} from {out}")
    if trainer.rank == 0:
        atomic_save(out / "run.yaml", lambda p: Path(p).write_text(yaml.safe_dump(settings, sort_keys=False)))
