"""The GPU path, measured: training images/s under each throughput setting, and sampling latency per NFE against the
network's own forward time x NFE (the physical limit) and against diffusers' pipeline on the same model.

Training: the demo's U-Net at `--resolution` (3 channels, random data), full steps (loss, backward, fused AdamW on
CUDA), batch `--batch`, with each setting on: fp32 (the baseline), channels-last, bf16 autocast, and torch.compile of
the network (--compile); rounds alternate between the settings and the median is reported. Sampling: a diffusers
UNet2DModel of DDPM's CIFAR-10 layout (scaled by `--width`), randomly initialised and saved to a temporary folder,
opened by denoisekit's diffusers opener (so both libraries run the very same network), at batch `--sample-batch`:
(a) its forward pass alone, NFE times in a loop, (b) our `ddim` (leading spacing), (c) diffusers' `DDIMPipeline` at the same NFE,
each the fastest of `--repeats` (ours and theirs interleaved), with CUDA synchronised around every timing; on a GPU
also our ddim eager against replayed from CUDA graphs at batch 1 and `--sample-batch` (reported). Claims: our sampling within 1.1x of the
forward x NFE limit, and no slower than diffusers' pipeline (ratio <= 1.05); the best training setting's speed-up is
reported, not judged. Writes benchmarks/results/gpu.json on a GPU (gpu_cpu.json with --device cpu: a smoke run of the
script, not a GPU figure). Run it alone.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import demo_config, merged, verdict, write_result  # noqa: E402

import torch  # noqa: E402

LIMIT, VS_DIFFUSERS = 1.1, 1.05


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fns: dict, device, repeats: int) -> dict:
    """The fastest of `repeats` calls of each fn, in seconds, the calls interleaved (a, b, a, b, ...) so the
    machine's drift hits all alike (one untimed warm-up call of each first)."""
    for fn in fns.values():
        fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def training_rows(args, device) -> list:
    """Images/s of full training steps for each setting, in alternating rounds (median reported)."""
    from denoisekit.data import ArrayDataset
    from denoisekit.recipes import RunConfig, build_denoiser
    from denoisekit.recipes.config import build_loss
    from denoisekit.train import TrainConfig, Trainer
    from denoisekit.utils import bf16_support
    rc = RunConfig.from_dict(merged(demo_config(), {"train": {"batch_size": args.batch}}))
    data = ArrayDataset(torch.rand(args.batch * 4, 3, args.resolution, args.resolution) * 2 - 1, name="random")
    settings = {"fp32": {}, "channels_last": {"channels_last": True}}
    if bf16_support(device)[0]:
        settings["bf16"] = {"amp": True}
    if args.compile:
        settings["compile"] = {"compile": True}
    trainers = {}
    for name, over in settings.items():
        torch.manual_seed(0)
        cfg = TrainConfig(steps=10**6, batch_size=args.batch, lr=1e-4, warmup_steps=0, progress=False,
                          tensorboard=False, checkpoint_every=10**6, device=str(device), **over)
        trainers[name] = Trainer(build_denoiser(rc, data), build_loss(rc), data, tempfile.mkdtemp(), cfg)
        for _ in range(3):  # warm-up (and compilation)
            trainers[name].train_step()
    speeds: dict = {name: [] for name in trainers}
    for _ in range(args.rounds):
        for name, trainer in trainers.items():
            sync(device)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                trainer.train_step()
            sync(device)
            speeds[name].append(args.batch * args.steps / (time.perf_counter() - t0))
    rows = [{"setting": name, "images_per_s": statistics.median(v)} for name, v in speeds.items()]
    for r in rows:
        r["vs_fp32"] = r["images_per_s"] / rows[0]["images_per_s"]
        print(f"train {r['setting']:14s} {r['images_per_s']:9.1f} images/s  {r['vs_fp32']:.2f}x fp32", flush=True)
    return rows


def sampling_rows(args, device) -> list:
    """Seconds per call at each NFE: the forward alone x NFE, our ddim, diffusers' DDIMPipeline, same UNet."""
    import diffusers

    from denoisekit.models import load_model
    from denoisekit.samplers import sample
    w = args.width
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=args.resolution, in_channels=3, out_channels=3, layers_per_block=2,
                                 block_out_channels=(w, 2 * w, 2 * w, 2 * w),
                                 down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"))
    folder = Path(tempfile.mkdtemp()) / "pipe"
    diffusers.DDIMPipeline(unet, diffusers.DDIMScheduler(set_alpha_to_one=True, clip_sample=False)).save_pretrained(
        folder)
    model = load_model(folder, device=str(device))
    pipe = diffusers.DDIMPipeline.from_pretrained(folder).to(device)
    pipe.set_progress_bar_config(disable=True)
    n, shape = args.sample_batch, (3, args.resolution, args.resolution)
    x_T = torch.randn((n, *shape), generator=torch.Generator().manual_seed(0)).to(device)
    t = torch.full((n,), 500.0, device=device)
    rows = []
    with torch.inference_mode():
        for nfe in args.nfe:
            both = timed({"limit": lambda: [pipe.unet(x_T, t).sample for _ in range(nfe)],
                          "ours": lambda: sample(model.denoiser, x_T, "ddim", nfe, "leading"),
                          "theirs": lambda: pipe(batch_size=n, num_inference_steps=nfe, eta=0.0, output_type="np",
                                                 generator=torch.Generator(device="cpu").manual_seed(0))},
                         device, args.repeats)
            limit, ours, theirs = both["limit"], both["ours"], both["theirs"]
            row = {"nfe": nfe, "forward_x_nfe_s": limit, "ours_s": ours, "diffusers_s": theirs,
                   "ours_vs_limit": ours / limit, "ours_vs_diffusers": ours / theirs}
            rows.append(row)
            print(f"sample NFE {nfe:3d}: forward x NFE {row['forward_x_nfe_s']:.3f} s, ours {ours:.3f} s "
                  f"({row['ours_vs_limit']:.2f}x the limit), diffusers {theirs:.3f} s (ours "
                  f"{row['ours_vs_diffusers']:.2f}x)", flush=True)
    return rows


def graph_rows(args, device) -> list:
    """Our ddim eager and replayed from CUDA graphs (samplers/graphs.py), at batch 1 and --sample-batch, per NFE:
    where graphs pay (launch-bound small batches) and where they do not; reported, not judged."""
    if device.type != "cuda":
        print("CUDA graphs: GPU only; no rows in a CPU smoke run", flush=True)
        return []
    from denoisekit.nets import UNet
    from denoisekit.processes import DiscreteVP
    from denoisekit.denoiser import Denoiser
    from denoisekit.samplers import sample
    from denoisekit.samplers.graphs import GraphedNet
    torch.manual_seed(0)
    d = Denoiser(UNet(in_channels=3, channels=args.width // 2, channel_mult=(1, 2, 2), num_res_blocks=2,
                      attention_levels=(1,)), DiscreteVP(), "eps").to(device).eval()
    eager, graphed = d.net, GraphedNet(d.net)  # one recording per shape, kept across the timed calls

    def with_graphs(x_T, nfe):
        d.net = graphed
        try:
            return sample(d, x_T, "ddim", nfe, "leading")
        finally:
            d.net = eager
    rows = []
    with torch.inference_mode():
        for n in sorted({1, args.sample_batch}):
            x_T = torch.randn((n, 3, args.resolution, args.resolution), generator=torch.Generator().manual_seed(0))
            x_T = x_T.to(device)
            for nfe in args.nfe:
                both = timed({"eager": lambda: sample(d, x_T, "ddim", nfe, "leading"),
                              "graphs": lambda: with_graphs(x_T, nfe)}, device, args.repeats)  # recorded in the warm-up
                rows.append({"batch": n, "nfe": nfe, "eager_s": both["eager"], "graphs_s": both["graphs"],
                             "speedup": both["eager"] / both["graphs"]})
                print(f"CUDA graphs, batch {n:3d}, NFE {nfe:3d}: eager {both['eager']:.3f} s, graphs "
                      f"{both['graphs']:.3f} s ({rows[-1]['speedup']:.2f}x)", flush=True)
    return rows


def claims(rows: list) -> list:
    """Our sampling within LIMIT x the forward x NFE, and at most VS_DIFFUSERS x diffusers' pipeline, at each NFE."""
    out = []
    for r in rows:
        out.append((f"NFE {r['nfe']}: our ddim {r['ours_s']:.3f} s is {r['ours_vs_limit']:.2f}x the network's forward "
                    f"x NFE ({r['forward_x_nfe_s']:.3f} s); goal <= {LIMIT}x", r["ours_vs_limit"] <= LIMIT))
        out.append((f"NFE {r['nfe']}: our ddim is {r['ours_vs_diffusers']:.2f}x diffusers' DDIMPipeline "
                    f"({r['diffusers_s']:.3f} s) on the same UNet; goal <= {VS_DIFFUSERS}x",
                    r["ours_vs_diffusers"] <= VS_DIFFUSERS))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="cuda (or auto); cpu makes a smoke run of the script")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--batch", type=int, default=128, help="training batch")
    p.add_argument("--steps", type=int, default=20, help="training steps per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--compile", action="store_true", help="also a torch.compile row")
    p.add_argument("--width", type=int, default=128, help="the sampling UNet's base channels (DDPM CIFAR-10: 128)")
    p.add_argument("--sample-batch", type=int, default=64, dest="sample_batch")
    p.add_argument("--nfe", default="10,50", help="comma-separated NFE")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    try:
        args.nfe = [int(v) for v in args.nfe.split(",")]
    except ValueError:
        p.error(f"--nfe: expected comma-separated integers, got {args.nfe!r}")
    for flag in ("resolution", "batch", "steps", "rounds", "width", "sample_batch", "repeats"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')}: expected a positive integer, got {getattr(args, flag)}")
    if not args.nfe or min(args.nfe) < 1:
        p.error(f"--nfe: expected positive integers, got {args.nfe}")
    from denoisekit.utils import check_device
    try:
        device = check_device(args.device, "--device")
    except ValueError as e:
        p.error(str(e))
    if args.device == "auto" and device.type != "cuda":
        p.error("--device: no GPU here; pass --device cpu for a smoke run of the script (not a GPU figure)")
    device = torch.device("cuda", 0) if device.type == "cuda" and device.index is None else device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}", flush=True)
    train, samp, graphs = training_rows(args, device), sampling_rows(args, device), graph_rows(args, device)
    write_result("gpu" if device.type == "cuda" else "gpu_cpu", {
        "device": name, "resolution": args.resolution, "batch": args.batch, "width": args.width,
        "sample_batch": args.sample_batch, "train": train, "sampling": samp, "cuda_graphs": graphs})
    return verdict(claims(samp))


if __name__ == "__main__":
    sys.exit(main())
