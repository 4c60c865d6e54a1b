"""Sampler overhead: time per step with a trivial model at batch 1 (3x32x32, one thread), ours vs diffusers.

The model is eps = 0.1 x, so what is timed is the sampler's own work: schedule set-up, coefficient arithmetic and
tensor updates. Both sides are timed over the whole sampling call (diffusers: set_timesteps and the step loop with
scale_model_input; ours: sample(), which computes every coefficient before its loop), in alternating rounds, and the
median per step is reported. Run it alone: other processes on the machine distort timings.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import verdict, write_result  # noqa: E402

from denoisekit import Denoiser, DiscreteVP, sample  # noqa: E402

PAIRS = {  # ours (sampler, schedule, options) vs diffusers (scheduler, config)
    "DDPM": (("ddpm", "leading", {}), ("DDPMScheduler", {})),
    "DDIM": (("ddim", "leading", {}), ("DDIMScheduler", {"set_alpha_to_one": True})),
    "DPM-Solver++ 2M": (("dpmpp_2m", "uniform", {}), ("DPMSolverMultistepScheduler", {"solver_order": 2})),
    "UniPC": (("unipc", "uniform", {"order": 2}), ("UniPCMultistepScheduler", {"solver_order": 2})),
    "Euler": (("euler", "karras", {}), ("EulerDiscreteScheduler", {"use_karras_sigmas": True})),
}


def trivial(x, t):
    return 0.1 * x


def time_ours(process, x_T, sampler, schedule, options, steps) -> float:
    denoiser = Denoiser.from_function(trivial, process, "eps")
    t0 = time.perf_counter()
    sample(denoiser, x_T, sampler, steps, schedule, generator=torch.Generator().manual_seed(0), **options)
    return time.perf_counter() - t0


def time_diffusers(diffusers, name, config, x_T, steps) -> float:
    sched = getattr(diffusers, name)(num_train_timesteps=1000, beta_schedule="linear", **config)
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    sched.set_timesteps(steps)
    x = x_T * sched.init_noise_sigma
    with torch.no_grad():
        for t in sched.timesteps:
            eps = trivial(sched.scale_model_input(x, t), t)
            kwargs = {"generator": g} if name in ("DDPMScheduler", "DDIMScheduler") else {}
            x = sched.step(eps, t, x, **kwargs).prev_sample
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--rounds", type=int, default=15)
    args = p.parse_args()
    torch.set_num_threads(1)
    import diffusers
    diffusers.utils.logging.set_verbosity_error()
    process = DiscreteVP("linear", 1000)
    x_T = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    rows = []
    print(f"{'algorithm':18s} {'ours us/step':>13s} {'diffusers us/step':>18s} {'ratio':>7s}")
    for label, ((sampler, schedule, options), (name, config)) in PAIRS.items():
        for _ in range(2):  # warm-up
            time_ours(process, x_T, sampler, schedule, options, args.steps)
            time_diffusers(diffusers, name, config, x_T, args.steps)
        ours, theirs = [], []
        for _ in range(args.rounds):
            ours.append(time_ours(process, x_T, sampler, schedule, options, args.steps) / args.steps)
            theirs.append(time_diffusers(diffusers, name, config, x_T, args.steps) / args.steps)
        o, d = statistics.median(ours) * 1e6, statistics.median(theirs) * 1e6
        rows.append({"algorithm": label, "ours": sampler, "diffusers": name, "ours_us_per_step": o,
                     "diffusers_us_per_step": d, "ratio": o / d})
        print(f"{label:18s} {o:13.0f} {d:18.0f} {o / d:7.2f}", flush=True)
    goal = all(r["ratio"] <= 0.5 for r in rows)
    path = write_result("sampler_overhead", {"steps": args.steps, "rounds": args.rounds, "batch": 1,
                                             "shape": [3, 32, 32], "threads": 1, "rows": rows,
                                             "goal_at_most_0.5x": goal})
    print(f"wrote {path}")
    return verdict(claims(rows))


def claims(rows: list) -> list:
    """Every algorithm's time per step at most half of diffusers' same algorithm."""
    worst = max(rows, key=lambda r: r["ratio"])
    return [(f"time per sampling step at most 0.5x diffusers' for every algorithm (worst {worst['ratio']:.2f}x, "
             f"{worst['algorithm']})", all(r["ratio"] <= 0.5 for r in rows))]


if __name__ == "__main__":
    sys.exit(main())
