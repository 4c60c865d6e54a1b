"""Where a training step of the demo model spends its time: torch.profiler's self CPU time grouped by kind of op
(convolution, matmul, normalization, activation, attention, element-wise, optimizer, the rest), the step's achieved
GFLOP/s, and that as a fraction of this machine's peak measured in the same run (a large fp32 and bf16 matmul).

The quality-per-CPU-minute issue asks for this table before and after each throughput change. A measurement, not a
claim: it states no goal. Writes benchmarks/results/train_profile.json (or NAME.json with --name).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))
from common import write_result  # noqa: E402
from train_throughput import flops_per_image, matmul_peak, ours  # noqa: E402

# (kind, substrings of aten op names), first match wins; anything else is 'other'
KINDS = [
    ("attention", ("scaled_dot_product", "_flash_attention", "_efficient_attention", "softmax", "bmm", "baddbmm")),
    ("convolution", ("convolution", "conv2d", "conv_", "_slow_conv", "mkldnn_convolution", "conv_depthwise")),
    ("matmul / linear", ("addmm", "aten::mm", "matmul", "linear")),
    ("normalization", ("group_norm", "native_group_norm", "layer_norm", "batch_norm")),
    ("activation", ("silu", "gelu", "sigmoid", "relu", "tanh")),
    ("optimizer", ("_foreach", "adam", "lerp", "addcdiv", "addcmul", "sqrt")),
    ("element-wise", ("aten::add", "aten::mul", "aten::sub", "aten::div", "aten::neg", "aten::exp", "aten::pow",
                      "aten::copy_", "aten::fill_", "aten::zero_", "aten::cat", "aten::where", "aten::clamp")),
]


def kind_of(name: str) -> str:
    low = name.lower()
    for kind, keys in KINDS:
        if any(k in low for k in keys):
            return kind
    return "other"


def cpu_flags() -> list:
    """The bf16 / AVX-512 flags this CPU reports (Linux), which decide whether bf16 autocast can pay."""
    from denoisekit.utils import cpu_flags as flags
    return sorted(flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=10, help="profiled steps (after 3 warm-up steps)")
    p.add_argument("--channels-last", dest="channels_last", action="store_true", help="NHWC memory layout")
    p.add_argument("--name", default="train_profile", help="the results file's name (e.g. train_profile_after)")
    args = p.parse_args()
    for flag, value in (("--batch", args.batch), ("--steps", args.steps)):
        if value < 1:
            p.error(f"{flag}: expected a positive integer, got {value}")
    torch.manual_seed(0)
    _, step, forward = ours(args.batch, channels_last=args.channels_last)
    x = torch.rand(args.batch, 1, 28, 28) * 2 - 1
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    for _ in range(3):
        step(x)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step(x)
    seconds = (time.perf_counter() - t0) / args.steps  # timed without the profiler's overhead
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step(x)
    by_kind: dict = {}
    for e in prof.key_averages():
        k = kind_of(e.key)
        by_kind[k] = by_kind.get(k, 0.0) + e.self_cpu_time_total / 1e3  # ms over all profiled steps
    total = sum(by_kind.values())
    rows = sorted(({"kind": k, "ms_per_step": v / args.steps, "share": v / total} for k, v in by_kind.items()),
                  key=lambda r: -r["share"])
    top = [{"op": e.key, "kind": kind_of(e.key), "ms_per_step": e.self_cpu_time_total / 1e3 / args.steps}
           for e in sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:15]]
    gflop = 3 * flops_per_image(forward, 4) * args.batch / 1e9  # forward + backward ~ 3x the forward
    achieved = gflop / seconds
    peak = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(f"training step, batch {args.batch}{', channels-last' if args.channels_last else ''}: {seconds * 1e3:.1f} ms ({args.batch / seconds:.1f} images/s), "
          f"{gflop:.2f} GFLOP -> {achieved:.1f} GFLOP/s; matmul peak fp32 {peak['fp32']:.1f}, bf16 "
          f"{peak['bf16']:.1f} GFLOP/s ({achieved / peak['fp32']:.0%} of fp32, {achieved / peak['bf16']:.0%} of bf16)")
    print(f"\n{'kind':18s} {'ms / step':>10s} {'share':>7s}")
    for r in rows:
        print(f"{r['kind']:18s} {r['ms_per_step']:>10.2f} {r['share']:>7.1%}")
    print("\ntop ops by self CPU time:")
    for r in top:
        print(f"  {r['op']:48s} {r['kind']:16s} {r['ms_per_step']:8.2f} ms")
    path = write_result(args.name, {"batch": args.batch, "channels_last": args.channels_last, "steps": args.steps, "ms_per_step": seconds * 1e3,
                                    "images_per_s": args.batch / seconds, "gflop_per_step": gflop,
                                    "achieved_gflops": achieved, "matmul_peak_gflops": peak,
                                    "by_kind": rows, "top_ops": top, "threads": torch.get_num_threads(),
                                    "cpu_flags": cpu_flags()})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
