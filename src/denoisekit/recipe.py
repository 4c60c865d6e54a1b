"""A run configuration (YAML or flags) and what it builds: data, denoiser, loss, trainer, sampling."""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional

import torch

from .config import build
from .data import ArrayDataset, load_dataset
from .denoiser import Denoiser
from .images import save_picture, save_row_strip
from .losses import SimpleLoss
from .nets import MLP, UNet
from .process import DiscreteVP
from .samplers import check_request, sample
from .train import TrainConfig, Trainer, find_checkpoint, load_config, load_weights
from .utils import sample_generators


@dataclass
class RunConfig:
    """One training run: every field can come from YAML and be overridden by flags."""
    data: str = "mnist"
    image_size: Optional[int] = None
    channels: Optional[int] = None
    class_cond: bool = False
    net: dict = field(default_factory=dict)          # UNet or MLP arguments
    process: dict = field(default_factory=dict)      # DiscreteVP arguments
    prediction: str = "eps"
    sigma_data: float = 0.5
    clip_x0: Optional[float] = None
    loss: dict = field(default_factory=dict)         # SimpleLoss arguments
    train: dict = field(default_factory=dict)        # TrainConfig fields
    sample: dict = field(default_factory=lambda: {"sampler": "ddpm", "steps": 100, "schedule": None, "options": {},
                                                  "n": 64, "seed": 0})
    eval: dict = field(default_factory=lambda: {"sampler": "ddpm", "steps": 50, "schedule": None, "options": {},
                                                "n": 500, "seed": 12345})

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"config: unknown keys {sorted(unknown)}; expected some of {sorted(known)}")
        base = cls()
        merged = {}
        for f in fields(cls):
            default = getattr(base, f.name)
            value = d.get(f.name, default)
            if isinstance(default, dict) and isinstance(value, dict):
                value = {**default, **value}
            merged[f.name] = value
        rc = cls(**merged)
        for section in ("sample", "eval"):
            check_sampling(getattr(rc, section), section)
        return rc

    def as_dict(self) -> dict:
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}


def check_sampling(section: dict, name: str) -> None:
    """Validate a run config's sampling section (sampler, steps, schedule, options, n, seed) before any work."""
    known = {"sampler", "steps", "schedule", "options", "n", "seed"}
    unknown = set(section) - known
    if unknown:
        raise ValueError(f"{name}: unknown keys {sorted(unknown)}; expected some of {sorted(known)}")
    for key in ("steps", "n"):
        v = section[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}.{key}: expected a positive integer, got {v!r}")
    if not isinstance(section["options"], dict):
        raise ValueError(f"{name}.options: expected a mapping of sampler options, got {section['options']!r}")
    check_request(section["sampler"], section["schedule"], section["options"], where=f"{name}.schedule")


def build_dataset(rc: RunConfig) -> ArrayDataset:
    return load_dataset(rc.data, image_size=rc.image_size, channels=rc.channels)


def build_denoiser(rc: RunConfig, ds: ArrayDataset) -> Denoiser:
    """The network (U-Net for images, MLP for vectors) inside a denoiser."""
    num_classes = ds.num_classes if rc.class_cond else None
    if rc.class_cond and not num_classes:
        raise ValueError(f"class_cond: the data set {ds.name!r} has no labels")
    if ds.is_image:
        net = UNet(in_channels=ds.x.shape[1], num_classes=num_classes, **rc.net)
    else:
        net = MLP(dim=ds.x.shape[1], num_classes=num_classes, **rc.net)
    process = DiscreteVP(**rc.process)
    alpha_end = float(process.alpha(torch.tensor(process.t_max, dtype=torch.float64)))
    if ds.is_image and rc.prediction == "eps" and rc.clip_x0 is None and alpha_end < 1e-3:
        warnings.warn(f"clip_x0: the noise schedule ends at alpha = {alpha_end:.1e}, where x0 = (x_t - sigma eps) / "
                      f"alpha from an eps prediction is unbounded; set clip_x0: 1.0 (as improved-diffusion's samplers "
                      f"do) for images in [-1, 1]", stacklevel=2)
    return Denoiser(net, process, rc.prediction, rc.sigma_data, rc.clip_x0)


@torch.no_grad()
def generate(denoiser: Denoiser, n: int, shape, *, seed: int = 0, steps: int = 100, sampler: str = "ddpm",
             schedule: Optional[str] = None, labels=None, callback=None, progress: bool = False,
             stats: Optional[dict] = None, times: Optional[torch.Tensor] = None, **options) -> torch.Tensor:
    """n samples through `denoisekit.sample`, sample i seeded by (seed, i) so it does not depend on n."""
    param = next(iter(denoiser.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    gens = sample_generators(seed, n)
    x_T = denoiser.process.prior_sample((n, *shape), gens, device=device)
    denoiser.eval()
    return sample(denoiser, x_T, sampler, steps, schedule, times=times, cond=labels, generator=gens,
                  callback=callback, progress=progress, stats=stats, **options)


def balanced_labels(n: int, num_classes: Optional[int], device) -> Optional[torch.Tensor]:
    """Labels 0, 1, ..., K-1, 0, 1, ... for a class-conditional model; None without classes."""
    return torch.arange(n, device=device) % num_classes if num_classes else None


def forward_process_picture(ds: ArrayDataset, process, path, n: int = 8, columns: int = 10, seed: int = 0):
    """x_t for a few data points at evenly spaced t: the forward process q(x_t | x_0)."""
    g = torch.Generator().manual_seed(seed)
    x0 = ds.x[torch.randperm(len(ds), generator=g)[: (n if ds.is_image else 2000)]]
    ts = torch.linspace(-1, process.t_max, columns, dtype=torch.float64)
    frames = [process.q_sample(x0, t.expand(len(x0)), torch.randn(x0.shape, generator=g)) for t in ts]
    return save_row_strip(frames, path, scale=2 if ds.is_image else 1)


def run_record(rc: RunConfig, ds: ArrayDataset, loss: SimpleLoss) -> dict:
    """What a checkpoint records beside the model: the run config, the loss and the data's name and shape."""
    return {"loss": loss.config(), "run": rc.as_dict(),
            "data": {"name": ds.name, "shape": list(ds.x.shape[1:]), "num_classes": ds.num_classes}}


def train_run(rc: RunConfig, out: Path, resume: bool = True) -> Path:
    """Train per the config into run folder `out`; returns the run folder."""
    ds = build_dataset(rc)
    denoiser = build_denoiser(rc, ds)
    loss = SimpleLoss(**rc.loss)
    tc = TrainConfig(**{"use_labels": rc.class_cond, **rc.train})
    out = Path(out)
    config = run_record(rc, ds, loss)
    shape = tuple(ds.x.shape[1:])

    def draw(ema_model, options: dict, n: int) -> torch.Tensor:
        """Samples for a picture or an evaluation, with balanced labels for a class-conditional model."""
        labels = balanced_labels(n, ds.num_classes if rc.class_cond else None, next(ema_model.parameters()).device)
        return generate(ema_model, n, shape, seed=options["seed"], steps=options["steps"], sampler=options["sampler"],
                        schedule=options["schedule"], labels=labels, **options["options"])

    def sample_fn(ema_model, step):
        x = draw(ema_model, rc.sample, rc.sample["n"] if ds.is_image else 2000)
        save_picture(x, out / "samples" / f"step-{step:07d}.png", scale=2 if ds.is_image else 1)

    evaluator = []  # built at the first evaluation, so runs that never evaluate never train a classifier

    def eval_fn(ema_model, step):
        from .eval import Evaluator
        if not evaluator:
            evaluator.append(Evaluator(ds, device=next(ema_model.parameters()).device, progress=tc.progress))
        return evaluator[0].evaluate(draw(ema_model, rc.eval, rc.eval["n"]).cpu())

    trainer = Trainer(denoiser, loss, ds, out, tc, config=config, sample_fn=sample_fn, eval_fn=eval_fn)
    if trainer.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        forward_process_picture(ds, denoiser.process, out / "forward_process.png")
    if resume and trainer.resume():
        print(f"resuming {out} at step {trainer.step}")
    trainer.train()
    return out


def load_denoiser(path, ema: bool = True, device: str = "cpu") -> tuple[Denoiser, dict]:
    """A trained denoiser and its config from a checkpoint or run folder."""
    folder = find_checkpoint(path)
    config = load_config(folder)
    if "model" not in config:
        raise ValueError(f"checkpoint: {folder} records no model configuration to rebuild from")
    denoiser = build(config["model"])
    denoiser.load_state_dict(load_weights(folder, ema=ema))
    return denoiser.to(device).eval(), config
