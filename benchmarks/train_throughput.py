"""Training images/second of denoisekit's demo MNIST model vs denoising-diffusion-pytorch's Unet, in one run.

Both do a full training step (loss, backward, optimizer) on 28x28x1 batches; rounds alternate between the two
so machine noise hits both alike; the median round is reported. Exits 1 if our speed-up is below --require.
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


def ours(batch: int, device: str = "cpu"):
    rc = RunConfig.from_dict(demo_config())
    ds = ArrayDataset(torch.zeros(batch, 1, 28, 28), name="mnist-shape")
    denoiser = build_denoiser(rc, ds).to(device)
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=8, help="timed steps a round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--require", type=float, default=3.0, help="minimum speed-up of ours over theirs")
    p.add_argument("--device", default="cpu", help="cpu or cuda (results then go to train_throughput_cuda.json)")
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast for both (CUDA)")
    args = p.parse_args()
    dev = args.device
    sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)
    torch.manual_seed(0)
    models = {"denoisekit (demo model)": ours(args.batch, dev), "denoising-diffusion-pytorch Unet(32,(1,2,4))":
              theirs(args.batch, dev)}
    x = torch.rand(args.batch, 1, 28, 28, device=dev) * 2 - 1
    autocast = torch.autocast(dev.split(":")[0], dtype=torch.bfloat16, enabled=args.amp)
    rates = {name: [] for name in models}
    for name, (_, step, _) in models.items():
        for _ in range(2 if dev == "cpu" else 10):  # warm-up
            with autocast:
                step(x)
    for _ in range(args.rounds):
        for name, (_, step, _) in models.items():
            sync()
            t0 = time.perf_counter()
            for _ in range(args.steps):
                with autocast:
                    step(x)
            sync()
            rates[name].append(args.batch * args.steps / (time.perf_counter() - t0))
    rows = []
    for name, (net, _, forward) in models.items():
        rows.append({"model": name, "parameters": sum(p.numel() for p in net.parameters()),
                     "forward_gflops_per_image": flops_per_image(forward, 4, dev) / 1e9,
                     "train_images_per_s": statistics.median(rates[name]), "rounds": rates[name]})
    ratio = rows[0]["train_images_per_s"] / rows[1]["train_images_per_s"]
    print(f"{'model':48s} {'params':>10s} {'GFLOP/img':>10s} {'train img/s':>12s}")
    for r in rows:
        print(f"{r['model']:48s} {r['parameters']:>10,d} {r['forward_gflops_per_image']:>10.3f} "
              f"{r['train_images_per_s']:>12.1f}")
    print(f"speed-up: {ratio:.2f}x (required {args.require}x)")
    name = "train_throughput" if dev == "cpu" else "train_throughput_cuda" + ("_bf16" if args.amp else "")
    path = write_result(name, {"batch": args.batch, "device": dev, "amp": args.amp, "rows": rows, "speedup": ratio,
                               "our_net": demo_config()["net"],
                               "required": args.require,
                               "gpu": torch.cuda.get_device_name() if dev != "cpu" else None})
    print(f"wrote {path}")
    return verdict(claims({"speedup": ratio, "required": args.require}))


def claims(result: dict) -> list:
    """The demo model trains at least `required` x the images/s of denoising-diffusion-pytorch's U-Net."""
    return [(f"training images/s at least {result['required']}x denoising-diffusion-pytorch's: "
             f"{result['speedup']:.2f}x", result["speedup"] >= result["required"])]


if __name__ == "__main__":
    sys.exit(main())
