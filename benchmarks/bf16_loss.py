"""Does bf16 autocast train the same model? Loss curves of the same run in fp32 and under bf16 autocast, over seeds.

A check of the numerics, not the speed: an MLP denoiser (eps-prediction, L_simple) on the 2-D moons, trained with
the library's Trainer, --seeds in each precision; bf16 autocast is forced on this device whether or not it has bf16
instructions (without them it is emulated: slow but the same arithmetic). The late loss (mean of the last --tail
logged values) of bf16 must lie within the run-to-run noise of fp32: |mean_bf16 - mean_fp32| at most twice the
standard error of that difference over the seeds. Writes benchmarks/results/bf16_loss.json.
"""
from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import mean_se, verdict, write_result  # noqa: E402

from denoisekit import Denoiser, DiscreteVP, SimpleLoss, TrainConfig, Trainer, make_toy  # noqa: E402
from denoisekit.nets import MLP  # noqa: E402


def curve(seed: int, bf16: bool, steps: int, device: str) -> list:
    """The logged loss every 20 steps of one run."""
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(steps=steps, batch_size=256, lr=2e-3, warmup_steps=20, seed=seed, progress=False,
                          tensorboard=False, log_every=20, checkpoint_every=steps, device=device)
        t = Trainer(Denoiser(MLP(hidden=128), DiscreteVP(), "eps"), SimpleLoss(), make_toy("moons", 8192, seed=0),
                    tmp, cfg)
        t.precision = "bf16" if bf16 else "fp32"  # forced: the numerics are under test, not whether bf16 pays here
        t.train()
        with open(Path(tmp) / "metrics.csv") as f:
            return [float(r["loss"]) for r in csv.DictReader(f)]


def claims(result: dict) -> list:
    """bf16's late loss within twice the standard error of the fp32-bf16 difference."""
    d, se = result["difference"], result["difference_se"]
    return [(f"bf16 autocast's late loss within run-to-run noise of fp32's: difference {d:+.5f} vs 2 SE "
             f"{2 * se:.5f}", abs(d) <= 2 * se)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--seeds", type=int, default=4, help="runs in each precision")
    p.add_argument("--tail", type=int, default=10, help="late logged losses averaged")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    if args.seeds < 2:
        p.error(f"--seeds: a standard error needs at least 2 runs, got {args.seeds}")
    if args.steps < 20 * args.tail:
        p.error(f"--steps: the last --tail {args.tail} logged losses need at least {20 * args.tail} steps")
    curves = {k: [curve(s, k == "bf16", args.steps, args.device) for s in range(args.seeds)] for k in ("fp32", "bf16")}
    late = {k: [sum(c[-args.tail:]) / args.tail for c in v] for k, v in curves.items()}
    (m32, se32), (m16, se16) = mean_se(late["fp32"]), mean_se(late["bf16"])
    paired = max(abs(a - b) for c32, c16 in zip(curves["fp32"], curves["bf16"]) for a, b in zip(c32, c16))
    result = {"steps": args.steps, "seeds": args.seeds, "tail": args.tail, "curves": curves, "late": late,
              "difference": m16 - m32, "difference_se": (se32**2 + se16**2) ** 0.5,
              "largest_same_seed_difference": paired}
    print(f"late loss: fp32 {m32:.6f} +- {se32:.6f}, bf16 {m16:.6f} +- {se16:.6f}; the same seed's logged losses "
          f"differ by at most {paired:.2e} between the precisions")
    write_result("bf16_loss", result)
    return verdict(claims(result))


if __name__ == "__main__":
    sys.exit(main())
