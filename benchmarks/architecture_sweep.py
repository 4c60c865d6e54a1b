"""Which U-Net gives the best MNIST-5k model for a fixed wall-clock budget on this machine? Networks differ in the
cost of a step, so unlike ablation.py the step cost differs and the clock is held fixed: each variant of
configs/demo.yaml is trained exactly as vs_ddpm_pytorch.py trains ours (its cosine learning-rate schedule fitted to
the budget from a timing of its step), then sampled with 20 ancestral steps and scored by the evaluator.

Writes benchmarks/results/architecture_sweep.json after every variant (about 12 minutes each on 2 CPU cores).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import write_result  # noqa: E402
from vs_ddpm_pytorch import Ours  # noqa: E402

from denoisekit.data import load_dataset  # noqa: E402
from denoisekit.eval import Evaluator  # noqa: E402

FULL_RES = {"patch_size": 1, "channels": 16, "channel_mult": [1, 2, 4], "attention_levels": []}
VARIANTS = {  # names without commas, so that --only can list them
    "full-res 16x(1-2-4) (the demo until 2026-11-23)": {"net": FULL_RES},
    "full-res 16x(1-2-4) + attention 7x7": {"net": {**FULL_RES, "attention_levels": [2]}},
    "patches 32x(1-2) + attention 7x7": {"net": {"patch_size": 2, "channels": 32, "channel_mult": [1, 2],
                                                 "attention_levels": [1]}},
    "patches 32x(1-2-2) + attention 7x7 and 4x4 (demo)": {},
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", type=float, default=600, help="training seconds for each variant")
    p.add_argument("--nfe", type=int, default=20)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--spacing", default="trailing")
    p.add_argument("--only", help="comma-separated variant names (see VARIANTS)")
    args = p.parse_args()
    ds = load_dataset("mnist")
    evaluator = Evaluator(ds)
    names = args.only.split(",") if args.only else list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        p.error(f"--only: unknown variants {unknown}; expected some of {list(VARIANTS)}")
    rows = []
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            ours = Ours(ds, Path(tmp), args.budget, args.batch, VARIANTS[name])
            ours.spacing = args.spacing
            while ours.used < args.budget and not ours.done:  # rounds, so the step plan is re-fitted as in the benchmark
                ours.train_for(min(30.0, args.budget - ours.used))
            steps, seconds = ours.trainer.step, ours.used
            with torch.no_grad():
                x = ours.sample(args.n, args.nfe, seed=0).clamp(-1, 1)
        m = evaluator.evaluate(x)
        rows.append({"variant": name, "overrides": VARIANTS[name], "parameters": ours.params, "steps": steps,
                     "planned_steps": ours.total_steps, "train_seconds": seconds,
                     "train_images_per_s": steps * args.batch / seconds,
                     **{k: m[k] for k in ("fd", "precision", "recall", "classifier_score", "class_tv")}})
        write_result("architecture_sweep", {"budget_s": args.budget, "nfe": args.nfe, "n": args.n,
                                            "batch": args.batch, "spacing": args.spacing, "rows": rows,
                                            "evaluator": evaluator.info})  # after each row: partial runs count
        r = rows[-1]
        print(f"{name:60s} {r['parameters']:>9,d} params {steps:>5d} steps {r['train_images_per_s']:6.1f} img/s  "
              f"FD {r['fd']:.3f}  precision {r['precision']:.3f}  recall {r['recall']:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
