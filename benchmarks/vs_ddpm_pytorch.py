"""denoisekit vs denoising-diffusion-pytorch on MNIST-5k: the same wall-clock training budget on this machine, each
sampled with the same number of network evaluations, scored by the same evaluator.

- denoisekit: the `make demo` configuration (configs/demo.yaml); its cosine learning-rate schedule is fitted to the
  budget from a short timing of its step and re-fitted to the measured rate after every round; sampled with the
  config's sampler (--sampler, default the demo's DPM-Solver++(2M) SDE) and its default schedule.
- denoising-diffusion-pytorch: Unet(dim=32, dim_mults=(1, 2, 4)) in GaussianDiffusion with its defaults (v-prediction,
  sigmoid schedule, 1000 steps), trained as its Trainer does (Adam lr 1e-4, betas (0.9, 0.99), grad-norm clip 1, EMA
  0.995 every 10 steps) at batch 32 (ours too), without its horizontal flips (wrong for digits); sampled with its
  DDIM (sampling_timesteps = NFE, eta 0).
Training alternates between the two in rounds, so machine noise hits both alike; each model's clock counts only its
own rounds. Each model is sampled from several sample seeds (--seeds, n images each); the ratio of our Frechet
distance to theirs is taken per seed, and its mean comes with a 95% t-interval over the seeds (the training is one
run each: the interval covers sampling noise, not training noise). Writes benchmarks/results/vs_ddpm_pytorch.json and
docs/figures/vs_ddpm_pytorch.png; the verdict is on the interval: exits 1 unless its upper end is at most --require.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).parent))
from common import demo_config, display_path, mean_se, stub_torchvision_if_broken, verdict, write_result  # noqa: E402

from denoisekit.data import load_dataset  # noqa: E402
from denoisekit.eval import Evaluator  # noqa: E402
from denoisekit.images import atomic_save, image_grid  # noqa: E402
from denoisekit.objectives import SimpleLoss  # noqa: E402
from denoisekit.recipes import RunConfig, build_denoiser, run_record  # noqa: E402
from denoisekit.samplers import SAMPLERS, SCHEDULES, generate  # noqa: E402
from denoisekit.train import TrainConfig, Trainer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class Ours:
    name = "denoisekit"

    def __init__(self, ds, run_dir: Path, budget: float, batch: int, overrides: Optional[dict] = None):
        self.rc = RunConfig.from_dict(demo_config(overrides))
        self.ds, self.run_dir, self.batch, self.budget, self.used = ds, run_dir, batch, budget, 0.0
        seconds_per_step = self._time_steps(20)
        self.total_steps = int(0.97 * budget / seconds_per_step)
        train = {**self.rc.train, "steps": self.total_steps, "batch_size": batch, "checkpoint_every": 10 ** 9,
                 "tensorboard": False, "progress": False, "log_every": 100}
        self.trainer = self._trainer(train)
        self.rc.train = train
        self.params = sum(p.numel() for p in self.trainer.model.parameters())

    def _trainer(self, train: dict) -> Trainer:
        loss = SimpleLoss(**self.rc.loss)
        return Trainer(build_denoiser(self.rc, self.ds), loss, self.ds, self.run_dir, TrainConfig(**train),
                       config=run_record(self.rc, self.ds, loss))

    def _time_steps(self, n: int) -> float:
        """Seconds per training step, timed on a throw-away copy (not counted in the budget)."""
        probe = self._trainer({**self.rc.train, "batch_size": self.batch, "steps": n + 3, "progress": False,
                               "tensorboard": False, "checkpoint_every": 10 ** 9})
        probe.train_step(), probe.train_step(), probe.train_step()
        t0 = time.perf_counter()
        for _ in range(n):
            probe.train_step()
        return (time.perf_counter() - t0) / n

    @property
    def done(self) -> bool:
        return self.trainer.step >= self.total_steps

    def train_for(self, seconds: float) -> int:
        t0, steps = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds and not self.done:
            self.trainer.train_step()
            steps += 1
        self.used += time.perf_counter() - t0
        self._refit()
        return steps

    def _refit(self):
        """Re-plan the step count from the rate measured so far, so the cosine schedule ends with the budget.

        The plan from the probe can be off by 10% on a shared machine; the schedule's length then moves by a few
        per cent a round, early, while the learning rate is still near its peak."""
        left = self.budget - self.used
        if left <= 0 or self.trainer.step < 50:
            return
        rate = self.trainer.step / self.used
        self.total_steps = max(self.trainer.step + 1, self.trainer.step + int(0.99 * left * rate))
        self.trainer.cfg.steps = self.total_steps

    def finish(self):
        self.trainer.save()

    def sample(self, n: int, nfe: int, seed: int) -> torch.Tensor:
        options = {"variance": "beta_tilde"} if self.sampler == "ddpm" else {}
        steps = nfe_steps(self.trainer.ema.model, self.sampler, nfe)
        return generate(self.trainer.ema.model, n, (1, 28, 28), seed=seed, steps=steps, sampler=self.sampler,
                        schedule=self.spacing, progress=True, **options)


def nfe_steps(denoiser, sampler: str, nfe: int) -> int:
    """The most steps of `sampler` whose counted network evaluations fit in `nfe` (probed on one sample)."""
    for steps in range(nfe, 0, -1):
        stats: dict = {}
        with torch.no_grad():
            generate(denoiser, 1, (1, 28, 28), steps=steps, sampler=sampler, stats=stats)
        if stats["nfe"] <= nfe:
            return steps
    raise ValueError(f"--nfe: {sampler} needs more than {nfe} network evaluations for one step")


class Theirs:
    name = "denoising-diffusion-pytorch"

    def __init__(self, ds, batch: int, nfe: int, seed: int = 0):
        stub_torchvision_if_broken()
        from denoising_diffusion_pytorch import GaussianDiffusion, Unet
        from ema_pytorch import EMA
        torch.manual_seed(seed)
        net = Unet(dim=32, dim_mults=(1, 2, 4), channels=1)
        self.diffusion = GaussianDiffusion(net, image_size=28, timesteps=1000, sampling_timesteps=nfe)
        self.ema = EMA(self.diffusion, beta=0.995, update_every=10)
        self.opt = torch.optim.Adam(self.diffusion.parameters(), lr=1e-4, betas=(0.9, 0.99))
        self.x01 = (ds.x + 1) / 2                     # their GaussianDiffusion takes images in [0, 1]
        self.batch, self.g, self.step = batch, torch.Generator().manual_seed(seed), 0
        self.params = sum(p.numel() for p in net.parameters())
        self.done = False

    def train_for(self, seconds: float) -> int:
        t0, steps = time.perf_counter(), 0
        self.diffusion.train()
        while time.perf_counter() - t0 < seconds:
            idx = torch.randint(0, len(self.x01), (self.batch,), generator=self.g)
            loss = self.diffusion(self.x01[idx])
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.diffusion.parameters(), 1.0)
            self.opt.step()
            self.ema.update()
            steps += 1
        self.step += steps
        return steps

    def finish(self):
        pass

    def sample(self, n: int, nfe: int, seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        model = self.ema.ema_model.eval()
        out = [model.sample(batch_size=min(250, n - i)) for i in range(0, n, 250)]
        return torch.cat(out) * 2 - 1


def side_by_side(grids: dict, path: Path) -> Path:
    """Two labelled sample grids next to each other."""
    ims = {k: image_grid(v[:64], nrow=8, scale=3) for k, v in grids.items()}
    w = sum(im.width for im in ims.values()) + 20 * (len(ims) + 1)
    h = max(im.height for im in ims.values()) + 40
    canvas = Image.new("L", (w, h), 255)
    draw, x = ImageDraw.Draw(canvas), 20
    for label, im in ims.items():
        draw.text((x, 10), label, fill=0)
        canvas.paste(im, (x, 30))
        x += im.width + 20
    return atomic_save(path, lambda p: canvas.save(p, format="PNG"))


T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def ratio_interval(ratios: list) -> tuple[float, float, float]:
    """Mean of the per-seed ratios and its two-sided 95% Student-t interval (needs two seeds or more)."""
    mean, se = mean_se(ratios)
    half = T_975.get(len(ratios) - 1, 1.96) * se
    return mean, mean - half, mean + half


def claims(result: dict) -> list:
    """Our FD at most `required` x theirs, judged on the upper end of the ratio's interval over sample seeds."""
    lo, hi = result["fd_ratio_interval"]
    return [(f"our Frechet distance at most {result['required']}x theirs at {result['nfe']} NFE: ratio "
             f"{result['fd_ratio']:.3f} (95% interval {lo:.3f} .. {hi:.3f} over sample seeds {result['seeds']})",
             hi <= result["required"])]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", type=float, default=600, help="training seconds for each library")
    p.add_argument("--round", type=float, default=30, help="seconds of one alternating training round")
    p.add_argument("--nfe", type=int, default=20, help="network evaluations per sample")
    p.add_argument("--n", type=int, default=1000, help="samples scored for each")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--sampler", default=demo_config()["sample"]["sampler"], help="our sampler (default: the demo's)")
    p.add_argument("--spacing", default=None, help="our step schedule (default: the sampler's own)")
    p.add_argument("--out", default=str(ROOT / "runs" / "vs_ddpm_pytorch"), help="our run folder (the checkpoint)")
    p.add_argument("--figure", default=str(ROOT / "docs" / "figures" / "vs_ddpm_pytorch.png"))
    p.add_argument("--require", type=float, default=0.1, help="largest allowed ratio of our FD to theirs")
    p.add_argument("--seeds", default="0,1,2", help="sample seeds (at least two): the ratio's interval is over them")
    args = p.parse_args()
    try:
        seeds = sorted({int(v) for v in args.seeds.split(",")})
    except ValueError:
        seeds = []
    if len(seeds) < 2:
        p.error(f"--seeds: expected at least two distinct integer sample seeds, got {args.seeds!r}")
    if args.sampler not in SAMPLERS:
        p.error(f"--sampler: expected one of {', '.join(sorted(SAMPLERS))}, got {args.sampler!r}")
    if args.spacing is not None and args.spacing not in SCHEDULES:
        p.error(f"--spacing: expected one of {', '.join(SCHEDULES)}, got {args.spacing!r}")
    ds = load_dataset("mnist")
    evaluator = Evaluator(ds)                                  # trains or loads the reference classifier first
    ours = Ours(ds, Path(args.out), args.budget, args.batch)
    ours.sampler, ours.spacing = args.sampler, args.spacing
    theirs = Theirs(ds, args.batch, args.nfe)
    runs = [ours, theirs]
    used = {r.name: 0.0 for r in runs}
    steps = {r.name: 0 for r in runs}
    while any(used[r.name] < args.budget and not r.done for r in runs):
        for r in runs:
            left = args.budget - used[r.name]
            if left > 0 and not r.done:
                t0 = time.perf_counter()
                steps[r.name] += r.train_for(min(args.round, left))
                used[r.name] += time.perf_counter() - t0
        print("  ".join(f"{k}: {steps[k]} steps in {used[k]:.0f}s" for k in used), flush=True)
    ours.finish()
    rows, samples, per_seed = [], {}, {}
    for r in runs:
        for seed in seeds:
            t0 = time.perf_counter()
            with torch.no_grad():
                x = r.sample(args.n, args.nfe, seed=seed).cpu().clamp(-1, 1)
            sample_s = time.perf_counter() - t0
            npz = Path(args.out) / f"samples_{r.name}_seed{seed}.npz"   # rescore later: denoisekit eval NPZ
            atomic_save(npz, lambda f: np.savez(open(f, "wb"), x=x.numpy()))
            m = evaluator.evaluate(x)
            per_seed.setdefault(r.name, []).append({"seed": seed, "fd": m["fd"], "sample_seconds": sample_s})
            print(f"{r.name} seed {seed}: FD {m['fd']:.3f} ({sample_s:.0f}s)", flush=True)
            if seed == seeds[0]:
                samples[r.name] = x
                rows.append({"library": r.name, "parameters": r.params, "train_seconds": used[r.name],
                             "train_steps": steps[r.name],
                             "train_images_per_s": steps[r.name] * args.batch / used[r.name],
                             "nfe": args.nfe, "sample_seconds": sample_s, **{k: m[k] for k in (
                                 "fd", "precision", "recall", "classifier_score", "class_tv", "class_histogram")}})
        fds = [s["fd"] for s in per_seed[r.name]]
        rows[-1].update({"fd_seeds": fds, "fd_mean": sum(fds) / len(fds)})
    ratios = [a["fd"] / b["fd"] for a, b in zip(per_seed[ours.name], per_seed[theirs.name])]
    ratio, lo, hi = ratio_interval(ratios)
    print(f"\n{'library':30s} {'params':>9s} {'steps':>6s} {'img/s':>7s} {'FD':>8s} {'prec':>6s} {'recall':>6s} "
          f"{'CS':>6s}")
    for r in rows:
        print(f"{r['library']:30s} {r['parameters']:>9,d} {r['train_steps']:>6d} {r['train_images_per_s']:>7.1f} "
              f"{r['fd']:>8.3f} {r['precision']:>6.3f} {r['recall']:>6.3f} {r['classifier_score']:>6.2f}")
    print(f"FD ratio ours/theirs per seed: {', '.join(f'{v:.3f}' for v in ratios)}; mean {ratio:.3f}, 95% interval "
          f"{lo:.3f} .. {hi:.3f} (required <= {args.require}); data halves FD "
          f"{evaluator.info['fd_data_halves']:.3f}; classifier accuracy {evaluator.info['classifier_accuracy']:.4f}")
    fig = side_by_side({f"{r['library']}: FD {r['fd']:.2f}": samples[r["library"]] for r in rows}, Path(args.figure))
    result = {
        "budget_s": args.budget, "nfe": args.nfe, "n": args.n, "batch": args.batch, "our_sampler": args.sampler,
        "our_spacing": args.spacing or "default",
        "rows": rows, "seeds": seeds, "fd_ratio_seeds": ratios, "fd_ratio": ratio, "fd_ratio_interval": [lo, hi],
        "required": args.require, "figure": display_path(fig),
        "evaluator": {k: evaluator.info[k] for k in ("classifier_accuracy", "fd_data_halves", "classifier_score_data")},
        "our_run": str(Path(args.out))}
    path = write_result("vs_ddpm_pytorch", result)
    print(f"wrote {path} and {fig}")
    return verdict(claims(result))


if __name__ == "__main__":
    sys.exit(main())
