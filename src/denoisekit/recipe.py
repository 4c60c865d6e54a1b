"""A run configuration (YAML or flags) and what it builds: data, denoiser, loss, trainer, sampling."""
from __future__ import annotations

import copy
import hashlib
import inspect
import re
import shutil
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable, Optional

import torch
import yaml
from torch import nn

from .config import REGISTRY, build, check_arguments, encode_value, require
from .data import ArrayDataset, load_dataset
from .denoiser import Denoiser
from .images import save_picture, save_row_strip
from .losses import HybridLoss, SimpleLoss, VLBLoss
from .nets import MLP, UNet
from .continuous import SubVPSDE, VESDE, VPSDE
from .ladder import NoiseLadder
from .process import DiscreteVP
from .score_matching import DSMLoss, ESMLoss, SSMLoss
from .samplers import check_request, sample
from .train import TrainConfig, Trainer, find_checkpoint, load_config, load_weights
from .train.checkpoint import load_matching
from .train.trainer import IncompatibleRun
from .utils import atomic_save, check_device, sample_generators


@dataclass
class RunConfig:
    """One training run: every field can come from YAML and be overridden by flags."""
    data: str = "mnist"
    image_size: Optional[int] = None
    channels: Optional[int] = None
    class_cond: bool = False
    net: dict = field(default_factory=dict)          # UNet or MLP arguments
    process: dict = field(default_factory=dict)      # kind (PROCESSES) and that process's arguments
    prediction: str = "eps"
    sigma_data: float = 0.5
    clip_x0: Optional[float] = None
    objective: str = "simple"                        # OBJECTIVES: simple, hybrid, vlb, dsm, ssm or esm
    learned_variance: Optional[bool] = None          # null: learned for objective hybrid or vlb, fixed for simple
    loss: dict = field(default_factory=dict)         # the objective's loss arguments (OBJECTIVES)
    train: dict = field(default_factory=dict)        # TrainConfig fields
    sample: dict = field(default_factory=lambda: {"sampler": "ddpm", "steps": 100, "schedule": None, "options": {},
                                                  "n": 64, "seed": 0})
    eval: dict = field(default_factory=lambda: {"sampler": "ddpm", "steps": 50, "schedule": None, "options": {},
                                                "n": 500, "seed": 12345})

    @classmethod
    def from_dict(cls, d) -> "RunConfig":
        """A run config from a parsed YAML mapping, every section checked against the constructor it feeds."""
        if d is None:
            d = {}
        if not isinstance(d, dict):
            raise ValueError(f"config: expected a mapping of settings (data: ..., net: ..., train: ...), got "
                             f"{type(d).__name__} {str(d)[:60]!r}")
        base = cls()
        d = {k: {} if v is None and isinstance(getattr(base, k, None), dict) else v for k, v in d.items()}
        values = check_arguments("", cls, d)  # an empty section ('net:' in YAML) means the defaults
        merged = {}
        for f in fields(cls):
            default = getattr(base, f.name)
            value = values.get(f.name, default)
            if f.name in ("sample", "eval"):
                by_process = build_process(values.get("process", base.process)).sampling_defaults()
                value = {**default, **by_process, **values.get(f.name, {})}
            merged[f.name] = value
        rc = cls(**merged)
        rc.check()
        return rc

    def check(self) -> None:
        """Everything that does not need the data: sections, ranges, sampling; the cheap constructors are built."""
        require(self.image_size is None or self.image_size >= 1, "image_size", "a positive integer or null",
                self.image_size)
        require(self.channels in (None, 1, 3), "channels", "1 (grey), 3 (RGB) or null", self.channels)
        check_net_keys(self.net)
        process = build_process(self.process)
        if self.objective in BOUND_OBJECTIVES and process.grid_step == 0:
            raise ValueError(f"objective: {self.objective} sums the discrete variational bound; it needs process.kind "
                             f"ddpm, not a continuous process")
        loss = build_loss(self)
        train = build_section("train", TrainConfig, self.train, reserved={"use_labels": "set by class_cond"})
        if train.compile and getattr(loss, "double_backward", False):
            raise ValueError(f"train.compile: objective {self.objective} differentiates tr(grad s) (a double "
                             f"backward), which torch.compile does not support; set train.compile: false")
        Denoiser(nn.Identity(), process, self.prediction, self.sigma_data, self.clip_x0, learns_variance(self))
        for section in ("sample", "eval"):
            check_sampling(getattr(self, section), section, process)

    def as_dict(self) -> dict:
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}


# The noise processes: DDPM's discrete VP (Ho et al. 2020), NCSN's noise ladder (Song & Ermon 2019) and the score
# SDEs' VP, sub-VP and VE (Song et al. 2021).
PROCESSES = {"ddpm": DiscreteVP, "ncsn": NoiseLadder, "vp": VPSDE, "subvp": SubVPSDE, "ve": VESDE}


def build_process(section):
    """The process named by the section's `kind` (ddpm by default), built from the section's other keys."""
    if not isinstance(section, dict):
        return build_section("process", DiscreteVP, section)
    values = dict(section)
    kind = values.pop("kind", "ddpm")
    if kind not in PROCESSES:
        raise ValueError(f"process.kind: expected one of {', '.join(PROCESSES)}, got {kind!r}")
    return build_section("process", PROCESSES[kind], values)


# The training objectives: L_simple (Ho et al. 2020), L_hybrid and L_vlb (Nichol & Dhariwal 2021), and denoising,
# sliced and explicit score matching (Vincent 2011; Song et al. 2019; Hyvarinen 2005).
OBJECTIVES = {"simple": SimpleLoss, "hybrid": HybridLoss, "vlb": VLBLoss, "dsm": DSMLoss, "ssm": SSMLoss,
              "esm": ESMLoss}
BOUND_OBJECTIVES = tuple(k for k, loss in OBJECTIVES.items() if issubclass(loss, HybridLoss))  # train through L_vlb


def build_loss(rc: RunConfig):
    """The objective's loss from the loss section (its keys checked against that loss's arguments)."""
    if rc.objective not in OBJECTIVES:
        raise ValueError(f"objective: expected one of {', '.join(OBJECTIVES)}, got {rc.objective!r}")
    return build_section("loss", OBJECTIVES[rc.objective], loss_arguments(rc))


def learns_variance(rc: RunConfig) -> bool:
    """Whether the network also outputs the variance interpolation v: by default exactly when the objective trains it."""
    if rc.learned_variance is None:
        return rc.objective in BOUND_OBJECTIVES
    if rc.learned_variance and rc.objective not in BOUND_OBJECTIVES:
        raise ValueError(f"learned_variance: objective {rc.objective} gives the variance no training signal; use "
                         f"objective hybrid or vlb to learn it")
    return rc.learned_variance


def loss_arguments(rc: RunConfig) -> dict:
    """The loss section, with label dropout p_uncond = 0.1 by default for a class-conditional model (one network for
    p(x | y) and p(x): classifier-free guidance needs both)."""
    if not isinstance(rc.loss, dict):
        return rc.loss
    if not rc.class_cond:
        if rc.loss.get("p_uncond"):
            raise ValueError("loss.p_uncond: drops class labels, so it needs class_cond: true")
        return rc.loss
    return {"p_uncond": 0.1, **rc.loss}


# Network arguments the recipe sets from the data and the run config, never from the net section.
RESERVED_NET = {"in_channels": "set from the data", "dim": "set from the data", "num_classes": "set by class_cond",
                "cond_channels": "set by conditioning recipes, not by a run config",
                "out_channels": "set by the prediction type", "out_dim": "set by the prediction type"}


def check_net_keys(net: dict) -> None:
    """The net section's keys and types against the U-Net and the MLP (which one is known once the data is loaded)."""
    unet, mlp = (set(inspect.signature(c).parameters) - set(RESERVED_NET) for c in (UNet, MLP))
    for key, value in net.items():
        if key in RESERVED_NET:
            raise ValueError(f"net.{key}: {RESERVED_NET[key]}; remove it from the config")
        if key not in unet | mlp:
            raise ValueError(f"net: unknown key {key!r}; the U-Net (images) takes some of {sorted(unet)}, the MLP "
                             f"(vectors) some of {sorted(mlp)}")
        check_arguments("net", UNet if key in unet else MLP, {key: value})


def build_section(name: str, cls, values, reserved: Optional[dict] = None, **fixed):
    """cls(**fixed, **values) for a config section, its errors named by section and key (`process.T: ...`)."""
    kwargs = check_arguments(name, cls, values, reserved=reserved)
    try:
        return cls(**fixed, **kwargs)
    except (ValueError, TypeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"{name}.{msg}" if re.match(r"^[A-Za-z_][\w\[\]]*: ", msg) else f"{name}: {msg}") from None


def check_sampling(section: dict, name: str, process=None) -> None:
    """Validate a run config's sampling section (sampler, steps, schedule, options, n, seed) before any work; given
    the process, also its times and the sampler's options for them."""
    known = {"sampler", "steps", "schedule", "options", "n", "seed"}
    unknown = set(section) - known
    if unknown:
        raise ValueError(f"{name}: unknown keys {sorted(unknown)}; expected some of {sorted(known)}")
    for key in ("steps", "n"):
        v = section[key]
        require(isinstance(v, int) and not isinstance(v, bool) and v >= 1, f"{name}.{key}", "a positive integer", v)
    seed = section["seed"]
    require(isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0, f"{name}.seed", "an integer >= 0",
            seed)
    require(isinstance(section["sampler"], str), f"{name}.sampler", "a sampler name", section["sampler"])
    require(section["schedule"] is None or isinstance(section["schedule"], str), f"{name}.schedule",
            "a schedule name or null", section["schedule"])
    if section["options"] is None:
        section["options"] = {}
    require(isinstance(section["options"], dict), f"{name}.options", "a mapping of sampler options",
            section["options"])
    try:
        check_request(section["sampler"], section["schedule"], section["options"], where=f"{name}.schedule",
                      process=process, steps=section["steps"])
    except ValueError as e:
        msg = str(e)
        if msg.startswith((f"{name}.", f"{name}:")):
            raise
        key = re.match(r"^(\w+): ", msg)
        if key and key.group(1) in section["options"]:
            raise ValueError(f"{name}.options.{msg}") from None
        named = key and key.group(1) in ("steps", "schedule")
        raise ValueError(f"{name}.{msg}" if named else f"{name}: {msg}") from None


def build_dataset(rc: RunConfig) -> ArrayDataset:
    """The run's data set; image_size and channels must fit it."""
    ds = load_dataset(rc.data, image_size=rc.image_size, channels=rc.channels)
    if not ds.is_image:
        for key in ("image_size", "channels"):
            require(getattr(rc, key) is None, key, f"null: the data set {ds.name!r} holds vectors, not images",
                    getattr(rc, key))
    elif rc.channels is not None and rc.channels != ds.x.shape[1]:
        raise ValueError(f"channels: the data set {ds.name!r} has {ds.x.shape[1]} channel(s); channels applies to "
                         f"image folders only")
    return ds


def build_denoiser(rc: RunConfig, ds: ArrayDataset) -> Denoiser:
    """The network (U-Net for images, MLP for vectors) inside a denoiser."""
    num_classes = ds.num_classes if rc.class_cond else None
    if rc.class_cond and not num_classes:
        raise ValueError(f"class_cond: the data set {ds.name!r} has no labels")
    learned = learns_variance(rc)
    widths = 2 if learned else 1  # learned variance: the prediction and v, split by the denoiser
    if ds.is_image:
        net = build_section("net", UNet, rc.net, in_channels=ds.x.shape[1], num_classes=num_classes,
                            out_channels=widths * ds.x.shape[1])
    else:
        net = build_section("net", MLP, rc.net, dim=ds.x.shape[1], num_classes=num_classes,
                            out_dim=widths * ds.x.shape[1])
    process = build_process(rc.process)
    alpha_end = float(process.alpha(torch.tensor(process.t_max, dtype=torch.float64)))
    if rc.objective in BOUND_OBJECTIVES and rc.prediction in ("eps", "score") and alpha_end == 0:
        raise ValueError(f"objective: L_vlb's last term needs x0 = (x_t - sigma eps) / alpha from the "
                         f"{rc.prediction}-prediction, and this schedule ends at alpha = 0; use a larger process.T, "
                         f"another schedule, or prediction v or x0")
    if ds.is_image and rc.prediction == "eps" and rc.clip_x0 is None and alpha_end < 1e-3:
        warnings.warn(f"clip_x0: the noise schedule ends at alpha = {alpha_end:.1e}, where x0 = (x_t - sigma eps) / "
                      f"alpha from an eps prediction is unbounded; set clip_x0: 1.0 (as improved-diffusion's samplers "
                      f"do) for images in [-1, 1]", stacklevel=2)
    return Denoiser(net, process, rc.prediction, rc.sigma_data, rc.clip_x0, learned)


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
    ts = torch.linspace(process.t_min, process.t_max, columns, dtype=torch.float64)
    frames = [process.q_sample(x0, t.expand(len(x0)), torch.randn(x0.shape, generator=g)) for t in ts]
    return save_row_strip(frames, path, scale=2 if ds.is_image else 1)


def run_record(rc: RunConfig, ds: ArrayDataset, loss) -> dict:
    """What a checkpoint records beside the model: the run config, the loss and the data's name, shape and content."""
    digest = hashlib.sha256(ds.x.contiguous().numpy().tobytes())
    if ds.y is not None:
        digest.update(ds.y.numpy().tobytes())
    return {"loss": loss.config(), "run": rc.as_dict(),
            "data": {"name": ds.name, "shape": list(ds.x.shape[1:]), "num_classes": ds.num_classes,
                     "size": len(ds), "fingerprint": digest.hexdigest()[:16]}}


@dataclass
class Run:
    """Everything a run config builds, before anything is written: data, denoiser, loss, training settings."""
    rc: RunConfig
    ds: ArrayDataset
    denoiser: Denoiser
    loss: Callable  # one of OBJECTIVES
    tc: TrainConfig

    @property
    def record(self) -> dict:
        return run_record(self.rc, self.ds, self.loss)

    def summary(self) -> str:
        n = sum(p.numel() for p in self.denoiser.parameters())
        return (f"{type(self.denoiser.net).__name__} ({n:,} parameters, {self.rc.prediction}-prediction) on "
                f"{self.ds.name!r} ({len(self.ds)} x {list(self.ds.x.shape[1:])}"
                f"{', class-conditional' if self.rc.class_cond else ''}): {self.tc.steps} steps of batch "
                f"{self.tc.batch_size}, lr {self.tc.lr:g}, device {check_device(self.tc.device).type}")


def prepare_run(rc: RunConfig) -> Run:
    """Load the data and build the network (seeded by train.seed, so the same config gives the same weights)."""
    ds = build_dataset(rc)
    tc = train_settings(rc, ds, use_labels=rc.class_cond)
    denoiser = seeded(tc.seed, lambda: build_denoiser(rc, ds))
    return Run(rc, ds, denoiser, build_loss(rc), tc)


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
    removed = []
    for name in RUN_OUTPUTS:
        p = Path(out) / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
        else:
            continue
        removed.append(name)
    return removed


def train_run(rc: RunConfig, out: Path, resume: bool = True, run: Optional[Run] = None) -> Path:
    """Train per the config into run folder `out`; returns the run folder.

    Nothing is written until the config is valid and the folder's checkpoints (if resuming) are compatible."""
    run = run or prepare_run(rc)
    ds, denoiser, loss, tc = run.ds, run.denoiser, run.loss, run.tc
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: {out} is a file; expected a run folder")
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

    trainer = Trainer(denoiser, loss, ds, out, tc, config=run.record, sample_fn=sample_fn, eval_fn=eval_fn)
    start_run(trainer, rc, out, resume, compatibility_check(denoiser, loss, run.record, out))
    if trainer.rank == 0:
        forward_process_picture(ds, denoiser.process, out / "forward_process.png")
        print(f"training {run.summary()} -> {out}")
    trainer.train()
    return out


def start_run(trainer: Trainer, rc: RunConfig, out: Path, resume: bool, check) -> None:
    """Resume (refusing another set-up) or clear a previous run's outputs; then record the config in run.yaml."""
    if resume and trainer.resume(check=check):
        print(f"resuming {out} at step {trainer.step}")
    elif not resume and trainer.rank == 0:
        removed = clear_run_outputs(out)
        if removed:
            print(f"--no-resume: removed the previous run's {', '.join(removed)} from {out}")
    if trainer.rank == 0:
        atomic_save(out / "run.yaml", lambda p: Path(p).write_text(yaml.safe_dump(rc.as_dict(), sort_keys=False)))


def load_denoiser(path, ema: bool = True, device: str = "cpu") -> tuple[Denoiser, dict]:
    """A trained denoiser and its config from a checkpoint or run folder."""
    folder = find_checkpoint(path)
    config = load_config(folder)
    if "model" not in config:
        raise ValueError(f"checkpoint: {folder} records no model configuration to rebuild from")
    try:
        denoiser = build(config["model"])
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise ValueError(f"checkpoint: {folder / 'config.json'} does not describe a model this version can build "
                         f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if not isinstance(denoiser, Denoiser):
        raise ValueError(f"checkpoint: {path} holds a {type(denoiser).__name__}, not a diffusion model"
                         f"{' (use it with --classifier)' if type(denoiser).__name__ == 'NoisyClassifier' else ''}")
    if ema and not (folder / "ema.safetensors").exists():
        warnings.warn(f"checkpoint: {folder} has no EMA weights; using the raw weights", stacklevel=2)
    load_matching(denoiser, load_weights(folder, ema=ema), folder)
    return denoiser.to(check_device(device)).eval(), config
