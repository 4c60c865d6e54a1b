"""Streaming an image folder larger than memory: peak resident memory of training on a generated folder of `--n`
small PNGs (MNIST-5k's digits, each shifted by a few pixels; 28x28 grey), read whole (the in-memory loader) against
streamed (`stream: true`, read in the training process, so every byte is counted in one process), and a baseline
that builds the same run on 64 of the images (the process's own weight: torch, the network, the optimizer). Each
mode runs in a fresh process for `--steps` steps of batch 64 of a small U-Net; peak RSS from getrusage. Claim: the
streamed run stays under the cap, the baseline plus `--cap-mb` (default 64 MB; the folder's float tensor is n x 784 x
4 bytes, 157 MB at 50,000), where the in-memory run does not. Writes benchmarks/results/streaming_memory.json. Run it
alone.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import verdict, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
folder, mode, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
import torch
from denoisekit.recipes import RunConfig
from denoisekit.recipes.build import prepare_run
from denoisekit.train import Trainer
t0 = time.perf_counter()
data = folder if mode != "baseline" else folder + "-64"
rc = RunConfig.from_dict({"data": data, "stream": mode == "stream", "net": {"channels": 16, "channel_mult": [1, 2]},
                          "train": {"steps": steps, "batch_size": 64, "progress": False, "tensorboard": False,
                                    "checkpoint_every": 10**6, "log_every": 10**6}})
run = prepare_run(rc)
trainer = Trainer(run.denoiser, run.loss, run.ds, sys.argv[4], run.tc)
for _ in range(steps):
    trainer.train_step()
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "seconds": time.perf_counter() - t0, "examples": len(run.ds)}))
"""


def make_folder(root: Path, n: int) -> None:
    """n PNGs of MNIST-5k's digits, each rolled by up to 2 pixels (a seeded choice), in one folder; and a 64-image
    folder beside it for the baseline."""
    import numpy as np
    from PIL import Image

    from denoisekit.data import load_dataset
    x = ((load_dataset("mnist").x[:, 0] + 1) * 127.5).round().byte().numpy()
    rng = np.random.default_rng(0)
    for target, count in ((root, n), (root.with_name(root.name + "-64"), 64)):
        if target.is_dir() and len(list(target.glob("*.png"))) == count:
            continue
        target.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            img = np.roll(x[i % len(x)], tuple(rng.integers(-2, 3, 2)), axis=(0, 1))
            Image.fromarray(img).save(target / f"{i:06d}.png")


def claims(rows: dict, cap_mb: float) -> list:
    base = rows["baseline"]["peak_rss_mb"]
    cap = base + cap_mb
    out = [(f"streamed: peak RSS {rows['stream']['peak_rss_mb']:.0f} MB, under the cap {cap:.0f} MB (baseline "
            f"{base:.0f} + {cap_mb:g})", rows["stream"]["peak_rss_mb"] <= cap),
           (f"in memory: peak RSS {rows['memory']['peak_rss_mb']:.0f} MB, over the cap (the cap is below what the "
            f"folder needs whole)", rows["memory"]["peak_rss_mb"] > cap)]
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=50000, help="PNGs in the generated folder")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--cap-mb", type=float, default=64.0, dest="cap_mb")
    p.add_argument("--work", default=str(ROOT / "runs" / "streaming_memory"))
    args = p.parse_args()
    if args.n < 64 or args.steps < 1 or args.cap_mb <= 0:
        p.error("--n: expected at least 64, --steps at least 1, --cap-mb a positive number")
    work = Path(args.work)
    t0 = time.perf_counter()
    make_folder(work / "pngs", args.n)
    print(f"folder of {args.n} PNGs ready in {time.perf_counter() - t0:.0f} s", flush=True)
    rows = {}
    for mode in ("baseline", "stream", "memory"):
        out = subprocess.run([sys.executable, "-c", CHILD, str(work / "pngs"), mode, str(args.steps),
                              str(work / f"run-{mode}")], capture_output=True, text=True, check=True)
        rows[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{mode:9s} peak RSS {rows[mode]['peak_rss_mb']:7.0f} MB, {rows[mode]['seconds']:.1f} s, "
              f"{rows[mode]['examples']} examples", flush=True)
    write_result("streaming_memory", {"n": args.n, "steps": args.steps, "cap_mb": args.cap_mb, "rows": rows})
    return verdict(claims(rows, args.cap_mb))


if __name__ == "__main__":
    sys.exit(main())
