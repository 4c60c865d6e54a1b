"""Training images/second of denoisekit's demo MNIST model, each throughput setting on and off, against
denoising-diffusion-pytorch's Unet, in one run.

Every row does a full training step (loss, backward, optimizer) on 28x28x1 batches. The settings: the demo's step as
configured (fp32, batch 32: the baseline), channels-last memory layout, larger batches, bf16 autocast (where the
device has bf16; on a CPU without avx512_bf16 / amx_bf16 the row says why it is skipped), one thread instead of two,
and (--compile) torch.compile of the network. Rounds alternate between the rows so machine noise hits all alike; the
median round is reported, with achieved GFLOP/s and its fraction of this machine's fp32 and bf16 matmul peak
measured in the same run. Verdicts: the best setting at least --goal x the baseline's images/s (the
quality-per-CPU-minute issue's goal) and the baseline at least --require x denoising-diffusion-pytorch's.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).parent))
from common import demo_config, stub_torchvision_if_broken, verdict, write_result  # noqa: E402

from denoisekit.data import ArrayDataset  # noqa: E402
from denoisekit.objectives import SimpleLoss  # noqa: E402
from denoisekit.recipes import RunConfig, build_denoiser  # noqa: E402
from denoisekit.utils import bf16_support  # noqa: E402


def ours(batch: int, device: str = "cpu", channels_last: bool = False, compile: bool = False):
    rc = RunConfig.from_dict(demo_config())
    ds = ArrayDataset(torch.zeros(batch, 1, 28, 28), name="mnist-shape")
    denoiser = build_denoiser(rc, ds).to(device)
    if channels_last:
        denoiser.to(memory_format=torch.channels_last)
    if compile:
        denoiser.net.compile()
    loss = SimpleLoss(**rc.loss)
    opt = torch.optim.AdamW(denoiser.parameters(), lr=1e-4)

    def step(x):
        value = loss(denoiser, x).mean()
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()

    forward = lambda x: denoiser.net_output(x, torch.full((x.shape[0],), 500.0, device=x.device))
    return denoiser.net, step, forward


def theirs(batch: int, device: str = "cpu"):
    stub_torchvision_if_broken()
    from denoising_diffusion_pytorch import GaussianDiffusion, Unet
    net = Unet(dim=32, dim_mults=(1, 2, 4), channels=1)
    diffusion = GaussianDiffusion(net, image_size=28, timesteps=1000).to(device)
    opt = torch.optim.Adam(diffusion.parameters(), lr=1e-4)

    def step(x):
        value = diffusion(x)
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()

    forward = lambda x: net(x, torch.full((x.shape[0],), 500, dtype=torch.long, device=x.device))
    return net, step, forward


def flops_per_image(forward, batch: int, device: str = "cpu") -> float:
    x = torch.randn(batch, 1, 28, 28, device=device)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        forward(x)
    return counter.get_total_flops() / batch


def matmul_peak(dtype: torch.dtype, device: str = "cpu", reps: int = 3) -> float:
    """GFLOP/s of a large square matmul in `dtype` (best of `reps`); bf16 on a CPU without bf16 instructions is
    measured at n = 512, where it already runs near 1 GFLOP/s."""
    n = 512 if (dtype == torch.bfloat16 and device == "cpu" and not bf16_support("cpu")[0]) else 2048
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    a @ b
    best = float("inf")
    for _ in range(reps):
        sync()
        t0 = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def settings(args) -> list:
    """(label, batch, channels_last, bf16, threads, compile) for each row; the first is the baseline."""
    b = args.batch
    rows = [("baseline: fp32, batch %d" % b, b, False, False, None, False),
            ("channels-last", b, True, False, None, False)]
    rows += [(f"batch {k}", k, False, False, None, False) for k in (2 * b, 4 * b)]
    rows += [(f"batch {4 * b} + channels-last", 4 * b, True, False, None, False),
             ("bf16 autocast", b, False, True, None, False),
             ("1 thread", b, False, False, 1, False)]
    if args.compile:
        rows.append(("torch.compile", b, False, False, None, True))
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=32, help="the baseline's batch (the demo's)")
    p.add_argument("--images", type=int, default=256, help="images a round for each row")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--require", type=float, default=3.0, help="minimum speed-up of our baseline over theirs")
    p.add_argument("--goal", type=float, default=2.0, help="the best setting's minimum speed-up over the baseline")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (minutes of compiling on a CPU)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (results then go to train_throughput_cuda.json)")
    args = p.parse_args()
    for flag, value in (("--batch", args.batch), ("--images", args.images), ("--rounds", args.rounds)):
        if value < 1:
            p.error(f"{flag}: expected a positive integer, got {value}")
    for flag, value in (("--require", args.require), ("--goal", args.goal)):
        if not value > 0:
            p.error(f"{flag}: expected a positive ratio, got {value}")
    dev = args.device
    if dev not in ("cpu", "cuda") and not dev.startswith("cuda:"):
        p.error(f"--device: expected cpu or cuda, got {dev!r}")
    if dev.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device: CUDA is not available on this machine")
    sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)
    threads = torch.get_num_threads()
    bf16_ok, bf16_why = bf16_support(dev)
    torch.manual_seed(0)
    rows, skipped = [], []
    for label, batch, cl, bf16, nthreads, comp in settings(args):
        if bf16 and not bf16_ok:
            skipped.append({"setting": label, "why": bf16_why})
            continue
        net, step, forward = ours(batch, dev, channels_last=cl, compile=comp)
        x = torch.rand(batch, 1, 28, 28, device=dev) * 2 - 1
        if cl:
            x = x.contiguous(memory_format=torch.channels_last)
        autocast = torch.autocast(dev.split(":")[0], dtype=torch.bfloat16, enabled=bf16)
        rows.append({"setting": label, "batch": batch, "channels_last": cl, "bf16": bf16,
                     "threads": nthreads or threads, "compile": comp, "net": net, "step": step, "x": x,
                     "autocast": autocast, "forward": forward, "rounds": []})
    theirs_net, theirs_step, theirs_forward = theirs(args.batch, dev)
    x_theirs = torch.rand(args.batch, 1, 28, 28, device=dev) * 2 - 1
    rows.append({"setting": "denoising-diffusion-pytorch Unet(32,(1,2,4)), fp32", "batch": args.batch,
                 "channels_last": False, "bf16": False, "threads": threads, "compile": False, "net": theirs_net,
                 "step": theirs_step, "x": x_theirs, "autocast": torch.autocast(dev.split(":")[0], enabled=False),
                 "forward": theirs_forward, "rounds": [], "anchor": True})

    def run(r, n):
        torch.set_num_threads(r["threads"])
        try:
            with r["autocast"]:
                for _ in range(n):
                    r["step"](r["x"])
        finally:
            torch.set_num_threads(threads)

    for r in rows:  # warm-up (torch.compile compiles here)
        t0 = time.perf_counter()
        run(r, 2 if dev == "cpu" else 10)
        r["warmup_seconds"] = time.perf_counter() - t0
    for _ in range(args.rounds):
        for r in rows:
            n = max(1, args.images // r["batch"])
            sync()
            t0 = time.perf_counter()
            run(r, n)
            sync()
            r["rounds"].append(r["batch"] * n / (time.perf_counter() - t0))
    peak = {"fp32": matmul_peak(torch.float32, dev), "bf16": matmul_peak(torch.bfloat16, dev)}
    out = []
    for r in rows:
        gflop_image = flops_per_image(r["forward"], 4, dev) / 1e9
        ips = statistics.median(r["rounds"])
        achieved = 3 * gflop_image * ips  # forward + backward ~ 3x the forward
        out.append({k: v for k, v in r.items() if k not in ("net", "step", "x", "autocast", "forward")} |
                   {"parameters": sum(p.numel() for p in r["net"].parameters()),
                    "forward_gflops_per_image": gflop_image, "train_images_per_s": ips,
                    "achieved_gflops": achieved, "fraction_of_fp32_peak": achieved / peak["fp32"],
                    "fraction_of_bf16_peak": achieved / peak["bf16"]})
    base = out[0]["train_images_per_s"]
    mine = [r for r in out if not r.get("anchor")]
    best = max(mine, key=lambda r: r["train_images_per_s"])
    anchor = next(r for r in out if r.get("anchor"))
    print(f"{'setting':52s} {'img/s':>8s} {'x base':>7s} {'GFLOP/s':>8s} {'of fp32 peak':>13s}")
    for r in out:
        print(f"{r['setting']:52s} {r['train_images_per_s']:>8.1f} {r['train_images_per_s'] / base:>7.2f} "
              f"{r['achieved_gflops']:>8.1f} {r['fraction_of_fp32_peak']:>13.0%}")
    for s in skipped:
        print(f"{s['setting']:52s} skipped: {s['why']}")
    print(f"matmul peak measured here: fp32 {peak['fp32']:.1f} GFLOP/s, bf16 {peak['bf16']:.1f} GFLOP/s")
    result = {"batch": args.batch, "device": dev, "rows": out, "skipped": skipped, "matmul_peak_gflops": peak,
              "baseline_images_per_s": base, "best": best["setting"], "best_speedup": best["train_images_per_s"] / base,
              "goal": args.goal, "speedup": base / anchor["train_images_per_s"], "required": args.require,
              "our_net": demo_config()["net"], "bf16_support": {"ok": bf16_ok, "why": bf16_why},
              "gpu": torch.cuda.get_device_name() if dev != "cpu" else None}
    name = "train_throughput" if dev == "cpu" else "train_throughput_cuda"
    path = write_result(name, result)
    print(f"wrote {path}")
    return verdict(claims(result))


def claims(result: dict) -> list:
    """The best setting at least `goal` x the baseline's images/s; the baseline at least `required` x
    denoising-diffusion-pytorch's."""
    return [(f"best setting ({result['best']}) at least {result['goal']}x the baseline's training images/s: "
             f"{result['best_speedup']:.2f}x", result["best_speedup"] >= result["goal"]),
            (f"training images/s at least {result['required']}x denoising-diffusion-pytorch's: "
             f"{result['speedup']:.2f}x", result["speedup"] >= result["required"])]


if __name__ == "__main__":
    sys.exit(main())
