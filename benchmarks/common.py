"""Shared benchmark helpers: machine facts and JSON results."""
from __future__ import annotations

import datetime
import json
import math
import os
import platform
from pathlib import Path
from typing import Optional

import torch

RESULTS = Path(__file__).parent / "results"
DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def merged(base: dict, over: dict) -> dict:
    """A config with `over` applied: dict sections are updated key by key, other values replaced."""
    out = dict(base)
    for k, v in over.items():
        out[k] = {**base.get(k, {}), **v} if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def demo_config(overrides: Optional[dict] = None) -> dict:
    """configs/demo.yaml as a dict, with optional overrides."""
    import yaml
    return merged(yaml.safe_load(DEMO_CONFIG.read_text()), overrides or {})


def train_once(run, cfg: dict, label: str):
    """(denoiser, config, training seconds): the model in run folder `run`, trained there from the run config `cfg`
    first when the folder has no checkpoint (seconds None when it was only loaded)."""
    import time
    from denoisekit.recipes import RunConfig, train_run
    from denoisekit.models import load_denoiser
    run, seconds = Path(run), None
    if not (run / "checkpoints").exists():
        print(f"training the {label} model into {display_path(run)}", flush=True)
        t0 = time.perf_counter()
        train_run(RunConfig.from_dict(cfg), run, resume=False)
        seconds = time.perf_counter() - t0
    denoiser, config = load_denoiser(run)
    return denoiser, config, seconds


def step_seconds(cfg: dict, repeats: int = 10) -> float:
    """Median seconds of a training step of this run config with the real trainer (after 2 warm-up steps); for a loss
    whose phases skip steps (every k > 1), the mean over whole periods, as its steps differ in cost."""
    import tempfile
    import time

    from denoisekit.recipes import RunConfig
    from denoisekit.recipes.build import prepare_run
    from denoisekit.train import Trainer
    run = prepare_run(RunConfig.from_dict(merged(cfg, {"train": {"tensorboard": False}})))
    with tempfile.TemporaryDirectory() as d:
        trainer = Trainer(run.denoiser, run.loss, run.ds, d, run.tc)
        period = max(p.every for p in trainer.phases)
        times = []
        for i in range(-(-repeats // period) * period + 2):
            t0 = time.perf_counter()
            trainer.train_step()
            if i >= 2:
                times.append(time.perf_counter() - t0)
    return sum(times) / len(times) if period > 1 else sorted(times)[len(times) // 2]


def trained_model(run, device: str = "cpu"):
    """(denoiser, config, evaluator, sample shape) of the model in run folder `run`; the demo configuration is
    trained there first when the folder has no checkpoint."""
    from denoisekit.data import load_dataset
    from denoisekit.eval import Evaluator
    from denoisekit.recipes import RunConfig, train_run
    from denoisekit.models import load_denoiser
    run = Path(run)
    if not (run / "checkpoints").exists():
        print(f"no trained model at {run}: training the demo configuration there first", flush=True)
        train_run(RunConfig.from_dict(demo_config()), run)
    denoiser, config = load_denoiser(run, device=device)
    evaluator = Evaluator(load_dataset(config["run"]["data"]), device=device)
    return denoiser, config, evaluator, tuple(config["data"]["shape"])


def seed_list(text: str) -> list:
    """An argparse type: comma-separated distinct sampling seeds >= 0 (e.g. '0,1,2'), as a list."""
    import argparse
    try:
        seeds = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"expected distinct integers >= 0, got {text!r}")
    return seeds


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def stub_torchvision_if_broken() -> bool:
    """denoising-diffusion-pytorch imports torchvision for its data pipeline, image saving and FID code, none of
    which its U-Net, loss or samplers touch. No CPU build of the torchvision that matches torch 2.13 exists on the
    package index here, so when it cannot be imported we put inert stand-ins in sys.modules."""
    import sys
    try:
        import torchvision  # noqa: F401
        return False
    except Exception:
        from unittest import mock
        for name in ("torchvision", "torchvision.transforms", "torchvision.transforms.functional", "torchvision.utils",
                     "torchvision.models", "torchvision.datasets", "torchvision.io", "torchvision.ops"):
            sys.modules[name] = mock.MagicMock(name=name)
        return True


def display_path(path) -> str:
    """A path relative to the repository when it lies inside it, else absolute."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(RESULTS.parents[1]))
    except ValueError:
        return str(path)


def write_result(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"machine": machine(), **data}, indent=2))
    os.replace(tmp, path)
    return path


def save_figure(fig, path) -> Path:
    """Lay out a matplotlib figure, write it as a PNG atomically, and close it."""
    import matplotlib.pyplot as plt

    from denoisekit.images import atomic_save
    fig.tight_layout()
    saved = atomic_save(path, lambda p: fig.savefig(p, format="png"))
    plt.close(fig)
    return saved


def verdict(claims: list) -> int:
    """Print each (claim, met) as one 'verdict:' line and return the exit code that follows them: 0 only when every
    claim is met. A benchmark with nothing to judge is an error, never a pass."""
    if not claims:
        raise ValueError("verdict: no claim was judged (an empty selection); nothing can pass vacuously")
    for text, met in claims:
        print(f"verdict: {'met' if met else 'NOT met'}: {text}")
    return 0 if all(met for _, met in claims) else 1


def paired_fd_difference(evaluator, a, b, n_boot: int = 200, seed: int = 0) -> tuple[float, float]:
    """FD(a) - FD(b) in the evaluator's classifier features against its data statistics, with a paired-bootstrap
    standard error (the same resampled indices for both: a and b start from the same prior noise)."""
    import torch

    from denoisekit.eval.frechet import frechet_distance, gaussian_stats
    fa, fb = (evaluator.classifier.features_and_logits(x.cpu().float().clamp(-1, 1))[0] for x in (a, b))
    if len(fa) != len(fb):
        raise ValueError("paired_fd_difference: the two sample sets must be the same size (paired by index)")

    def fd(f):
        return frechet_distance(*gaussian_stats(f), *evaluator.real_stats)
    g = torch.Generator().manual_seed(seed)
    boots = []
    for _ in range(n_boot):
        idx = torch.randint(0, len(fa), (len(fa),), generator=g)
        boots.append(fd(fa[idx]) - fd(fb[idx]))
    return fd(fa) - fd(fb), float(torch.tensor(boots, dtype=torch.float64).std())


def mean_se(values: list) -> tuple[float, float]:
    """The mean of `values` and its standard error, s / sqrt(k) with the sample standard deviation (k >= 2)."""
    k = len(values)
    if k < 2:
        raise ValueError(f"mean_se: a standard error needs at least two values, got {k}")
    mean = sum(values) / k
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (k - 1) / k)


class EqualMinutes:
    """Rows trained for the minutes of a reference row: the reference as configured, every other row for the steps the
    reference's wall minutes buy at that row's own measured seconds a step (`step_seconds`), scaled by the reference
    run's real over measured seconds a step (a timed step runs faster than one inside a whole run, with its
    checkpoints, set-up and final pictures, and the machine drifts). A finished row (work/NAME/trained.json) is read
    back, not trained again."""

    TOLERANCE = 1.1  # a row's training minutes may exceed the reference's by this factor

    def __init__(self, work, configs: dict, reference: str):
        self.work, self.configs, self.reference = Path(work), configs, reference
        self.trained: dict = {}
        self.calibration: Optional[float] = None

    def timed(self, name: str, fn, steps: int) -> dict:
        """Run fn once into work/name, returning {training minutes, steps} (a finished run's record read back)."""
        import time
        record = self.work / name / "trained.json"
        if record.is_file():
            print(f"{name}: trained earlier in {display_path(self.work / name)}", flush=True)
            return json.loads(record.read_text())
        t0 = time.perf_counter()
        fn()
        out = {"train_min": (time.perf_counter() - t0) / 60, "steps": steps}
        record.write_text(json.dumps(out))
        return out

    def autoencoder(self, steps: int) -> dict:
        """The first stage of the latent rows, work/autoencoder: latent_cascade's KL autoencoder on MNIST-5k (28x28 ->
        4x7x7) for `steps` steps of batch 32, timed (its minutes count against the rows that start from it)."""
        from denoisekit.recipes.autoencoder import AutoencoderConfig, train_autoencoder_run
        cfg = AutoencoderConfig.from_dict({"data": "mnist", "train": {"steps": steps, "batch_size": 32,
                                                                     "progress": False}})
        print(f"training the autoencoder ({steps} steps)", flush=True)
        self.trained["autoencoder"] = {"name": "autoencoder", **self.timed(
            "autoencoder", lambda: train_autoencoder_run(cfg, self.work / "autoencoder", resume=False), steps)}
        return self.trained["autoencoder"]

    def train(self, name: str, budget_min: Optional[float] = None) -> dict:
        """Train row `name` (the reference as configured; another for `budget_min`, default the reference's minutes)."""
        from denoisekit.recipes import RunConfig, train_run
        cfg, row = self.configs[name], {"name": name}
        if name != self.reference:
            if self.reference not in self.trained:
                self.train(self.reference)
            ref = self.trained[self.reference]
            budget_min = ref["train_min"] if budget_min is None else budget_min
            if not (self.work / name / "trained.json").is_file():
                if self.calibration is None:
                    self.calibration = ref["train_min"] * 60 / ref["steps"] / step_seconds(self.configs[self.reference],
                                                                                            20)
                    print(f"calibration: a step inside a run takes {self.calibration:.2f}x a timed one", flush=True)
                sec = step_seconds(cfg, 20) * self.calibration
                cfg = merged(cfg, {"train": {"steps": max(2, round(budget_min * 60 / sec))}})
                row["step_s"], row["calibration"] = sec, self.calibration
                print(f"{name}: {sec:.3f} s a step, so {cfg['train']['steps']} steps in {budget_min:.2f} minutes",
                      flush=True)
        print(f"training {name} into {display_path(self.work / name)}", flush=True)
        self.trained[name] = {**row, **self.timed(
            name, lambda: train_run(RunConfig.from_dict(cfg), self.work / name, resume=False), cfg["train"]["steps"])}
        return self.trained[name]

    @classmethod
    def claims(cls, trained: list, reference: str) -> list:
        """Each row's training minutes within TOLERANCE of the reference's."""
        minutes = {r["name"]: r["train_min"] for r in trained}
        if reference not in minutes:
            return []
        return [(f"{name} trained {m:.2f} min against {reference}'s {minutes[reference]:.2f} "
                 f"({m / minutes[reference]:.2f}x): equal minutes within {cls.TOLERANCE}x",
                 m <= cls.TOLERANCE * minutes[reference]) for name, m in minutes.items() if name != reference]


def train_missing(jobs) -> dict:
    """Run each (name, folder, train) whose folder holds no checkpoint yet; {name: training minutes} of those run (a
    finished run is scored again without training)."""
    import time

    from denoisekit.train import find_checkpoint
    minutes = {}
    for name, folder, train in jobs:
        try:
            find_checkpoint(folder)
        except (ValueError, OSError):
            t0 = time.perf_counter()
            train()
            minutes[name] = (time.perf_counter() - t0) / 60
            print(f"{name} trained in {minutes[name]:.1f} min", flush=True)
    return minutes
