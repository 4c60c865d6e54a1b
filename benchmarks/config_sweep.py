"""Which training settings give the best MNIST-5k model for a fixed number of steps? Each variant of
configs/demo.yaml (settings that leave the cost of a step unchanged: learning rate, EMA, parameterisation, loss
weighting, schedule) trains for --steps steps and is scored by the evaluator at a few NFE.

Writes benchmarks/results/config_sweep.json. Use a GPU for speed (`--device cuda`); the step count, not the clock,
is held fixed, so the ranking carries over to the CPU where a step costs the same for every variant.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import demo_config, merged, write_result  # noqa: E402

from denoisekit.data import load_dataset  # noqa: E402
from denoisekit.eval import Evaluator  # noqa: E402
from denoisekit.recipes import RunConfig, train_run  # noqa: E402
from denoisekit.samplers import generate  # noqa: E402
from denoisekit.models import load_denoiser  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

VARIANTS = {
    "demo (eps; lr 1e-3; EMA 0.999)": {},
    "lr 2e-3": {"train": {"lr": 2e-3}},
    "EMA 0.995": {"train": {"ema_decay": 0.995}},
    "lr 2e-3 + EMA 0.995": {"train": {"lr": 2e-3, "ema_decay": 0.995}},
    "v-prediction": {"prediction": "v"},
    "eps + min-SNR-5": {"loss": {"min_snr_gamma": 5}},
    "EDM + log-normal t": {"prediction": "edm", "loss": {"t_sampling": "lognormal"}},
    "cosine betas": {"process": {"schedule": "cosine"}},
    "batch 64 for half the steps": {"train": {"batch_size": 64}, "_steps_scale": 0.5},
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=2126, help="training steps (2,126: what 10 CPU minutes gave)")
    p.add_argument("--nfe", default="20,100")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--spacing", default="trailing")
    p.add_argument("--device", default="cpu")
    p.add_argument("--only", help="comma-separated variant names")
    args = p.parse_args()
    base = demo_config()
    ds = load_dataset("mnist")
    evaluator = Evaluator(ds, device=args.device)
    nfes = [int(v) for v in args.nfe.split(",")]
    names = args.only.split(",") if args.only else list(VARIANTS)
    rows = []
    for name in names:
        over = dict(VARIANTS[name])
        scale = over.pop("_steps_scale", 1.0)
        cfg = merged(base, over)
        cfg["train"] = {**cfg["train"], "steps": int(args.steps * scale), "checkpoint_every": 10 ** 9,
                        "progress": False, "tensorboard": False, "device": args.device}
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            train_run(RunConfig.from_dict(cfg), Path(tmp))
            denoiser, _ = load_denoiser(tmp, device=args.device)
        row = {"variant": name, "overrides": VARIANTS[name], "steps": cfg["train"]["steps"],
               "train_seconds": time.perf_counter() - t0}
        for nfe in nfes:
            x = generate(denoiser, args.n, (1, 28, 28), seed=0, steps=nfe, schedule=args.spacing)
            m = evaluator.evaluate(x.cpu())
            row[f"fd_{nfe}"], row[f"precision_{nfe}"], row[f"recall_{nfe}"] = m["fd"], m["precision"], m["recall"]
        rows.append(row)
        gpu = torch.cuda.get_device_name() if args.device.startswith("cuda") else None
        write_result("config_sweep", {"steps": args.steps, "n": args.n, "spacing": args.spacing, "gpu": gpu,
                                      "rows": rows, "evaluator": evaluator.info})  # after each row: partial runs count
        print(f"{name:34s} " + "  ".join(f"FD@{n} {row[f'fd_{n}']:.3f}" for n in nfes) +
              f"  ({row['train_seconds']:.0f}s)", flush=True)
    print(f"wrote {ROOT / 'benchmarks' / 'results' / 'config_sweep.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
