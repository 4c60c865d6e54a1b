"""Latent diffusion and cascaded generation against one pixel-space model at equal training minutes, on MNIST-5k.

The pixel model is the demo (configs/demo.yaml), trained first; its training wall time is the budget B.
- latent: a KL autoencoder (28x28 -> 4x7x7, `--ae-steps`) and then the demo's U-Net without its 2x2 patching on its
  latents for the steps that what is left of B buys (the autoencoder's minutes count against the latent model),
  sampled and decoded; and, as the first stage's floor, the data's own reconstructions.
- cascade: a base model on 14x14 images (the demo's U-Net, so 4x7x7 after patching) and a 14 -> 28 super-resolution
  stage (the demo's U-Net with the upsampled base sample concatenated), each trained for B/2; its input
  noise-augmented at u ~ U[0, 0.5] in training (Ho et al. 2021) and, for the ablation, a second stage without
  augmentation (aug_max 0) for B/2 too. Sampled with the input augmented at levels --aug-levels, and (as a
  diagnostic of the stage alone) on the real 14x14 images.
Every row trains for the steps its budget buys at its own measured seconds per step (the median of timed steps of
the real trainer, scaled by the pixel run's real over measured seconds a step), and its actual training time is
reported and judged (within 1.1x of the pixel model's, first stages included). Scores: Frechet distance, precision
and recall in the library's classifier features (`denoisekit eval`'s metrics) at 28x28, of `--n` samples per seed,
averaged over --seeds; sampling time: wall seconds per image (decoding or both stages included), for the verdict
timed apart: pixel, latent and cascade interleaved, the fastest of three batches of 250 each. Verdicts: the issue's
goal (latent sampling at least 3x faster per image at the same NFE, at a distance no worse than 1.2x the pixel
model's), the paper's finding (the augmented stage beats the one trained without augmentation) and equal minutes.
Writes benchmarks/results/latent_cascade.json and docs/figures/latent_cascade_grid.png. Run it alone: it times
training.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).parent))
from common import EqualMinutes, demo_config, merged, seed_list, verdict, write_result  # noqa: E402

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "figures"
SAMPLERS = (("dpmpp_2m_sde", None), ("ddim", "trailing"))  # the demo's stochastic sampler, and a deterministic one
NFE = 20
# The latent U-Net: the demo's own, without its 2x2 patching (4x7x7 latents: 7 -> 4 -> 2, attention at 4x4 and 2x2).
LATENT_NET = {"patch_size": 1}
BASE_NET: dict = {}  # the demo's U-Net as it is: its 2x2 patches make 14x14 images 4x7x7, a quarter of the demo's work


def row_configs(work: Path, aug_max: float) -> dict:
    """name -> run config; the demo's settings everywhere, changed only where the stage needs it."""
    base = demo_config({"train": {"progress": False, "ema_profiles": [], "sample_every": 0}})
    base.pop("sample", None)
    sr = merged(base, {"super_resolution": {"low_size": 14, "aug_max": aug_max, "aug_level": min(0.1, aug_max)}})
    return {"pixel": base,
            "latent": merged(base, {"latent": str(work / "autoencoder"), "net": LATENT_NET}),
            "base14": merged(base, {"image_size": 14, "net": BASE_NET}),
            "sr": sr,
            "sr-noaug": merged(sr, {"super_resolution": {"aug_max": 0.0, "aug_level": 0.0}})}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default=str(ROOT / "runs" / "latent_cascade"), help="where the runs go (a finished run "
                   "is scored again without training)")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--seeds", type=seed_list, default="0", help="comma-separated sampling seeds to average")
    p.add_argument("--ae-steps", type=int, default=300, dest="ae_steps", help="autoencoder training steps")
    p.add_argument("--aug-max", type=float, default=0.5, dest="aug_max", help="the augmented stage's largest level")
    p.add_argument("--aug-levels", default="0,0.1,0.2", dest="aug_levels", help="sampling levels of the augmented "
                   "stage, comma-separated in [0, 1]")
    args = p.parse_args()
    if args.n < 10:
        p.error(f"--n: expected at least 10 samples, got {args.n}")
    if args.ae_steps < 1:
        p.error(f"--ae-steps: expected a positive number of steps, got {args.ae_steps}")
    if not 0 < args.aug_max <= 1:
        p.error(f"--aug-max: expected a level in (0, 1], got {args.aug_max}")
    try:
        levels = [float(v) for v in args.aug_levels.split(",")]
    except ValueError:
        p.error(f"--aug-levels: expected comma-separated numbers, got {args.aug_levels!r}")
    if not levels or not all(0 <= u <= 1 for u in levels):
        p.error(f"--aug-levels: expected levels in [0, 1], got {args.aug_levels!r}")

    from denoisekit.cascade import upscale
    from denoisekit.data import load_dataset
    from denoisekit.eval import Evaluator
    from denoisekit.images import save_picture
    from denoisekit.models import load_model
    from denoisekit.samplers import generate
    work = Path(args.work)
    configs = row_configs(work, args.aug_max)
    data = load_dataset("mnist")
    evaluator = Evaluator(data, progress=False)

    trainer = EqualMinutes(work, configs, reference="pixel")
    trained: dict = {"pixel": trainer.train("pixel")}
    budget = trained["pixel"]["train_min"]
    trained["autoencoder"] = trainer.autoencoder(args.ae_steps)
    trained["latent"] = trainer.train("latent", budget - trained["autoencoder"]["train_min"])
    for name in ("base14", "sr", "sr-noaug"):
        trained[name] = trainer.train(name, budget / 2)

    def timing(models: dict, how, n: int = 250, repeats: int = 3) -> dict:
        """Seconds per image of pixel, latent (decoding included) and cascade sampling at NFE steps a stage, timed
        interleaved (pixel, latent, cascade, pixel, ...) and the fastest of `repeats` kept, so that the machine's
        drift hits all three alike; the ratios the verdict reads."""
        sampler, schedule = how
        kw = dict(steps=NFE, sampler=sampler, schedule=schedule)
        draws = {"pixel": lambda: models["pixel"].decode(generate(models["pixel"].denoiser, n, models["pixel"].shape,
                                                                  **kw)),
                 "latent": lambda: models["latent"].decode(generate(models["latent"].denoiser, n,
                                                                    models["latent"].shape, **kw)),
                 "cascade": lambda: upscale(models["sr"].denoiser,
                                            generate(models["base14"].denoiser, n, models["base14"].shape, **kw),
                                            (28, 28), aug_level=0.1, generate_kwargs=kw)}
        best = dict.fromkeys(draws, float("inf"))
        with torch.no_grad():
            for _ in range(repeats):
                for name, draw in draws.items():
                    t0 = time.perf_counter()
                    draw()
                    best[name] = min(best[name], (time.perf_counter() - t0) / n)
        print("sampling time, interleaved, fastest of " + str(repeats) + ": " +
              ", ".join(f"{k} {1000 * v:.2f} ms/image" for k, v in best.items()), flush=True)
        return {"name": "timing", "sampler": f"{sampler}{', ' + schedule if schedule else ''}", "nfe": NFE,
                "n": n, "repeats": repeats, "s_per_image": best}

    def score(label: str, draw, seeds=None) -> dict:
        """Mean metrics over the seeds of `draw(seed) -> (samples in [-1, 1] at 28x28, NFE)`, with seconds per image."""
        fds, precs, recs, secs, grid, nfe = [], [], [], [], None, None
        for seed in seeds or args.seeds:
            t0 = time.perf_counter()
            x, nfe = draw(seed)
            secs.append((time.perf_counter() - t0) / args.n)
            m = evaluator.evaluate(x.cpu().clamp(-1, 1))
            fds.append(m["fd"]), precs.append(m["precision"]), recs.append(m["recall"])
            grid = x[:8].cpu() if grid is None else grid
        mean = lambda v: sum(v) / len(v)  # noqa: E731
        row = {"label": label, "nfe": nfe, "fd": mean(fds), "fd_seeds": fds, "precision": mean(precs),
               "recall": mean(recs), "s_per_image": mean(secs), "_grid": grid}
        print(f"{label:58s} NFE {nfe:3d}  FD {row['fd']:.3f}  precision {row['precision']:.3f}  recall "
              f"{row['recall']:.3f}  {1000 * row['s_per_image']:.2f} ms/image", flush=True)
        return row

    def one_stage(model, sampler, schedule, steps=NFE):
        def draw(seed):
            stats: dict = {}
            with torch.no_grad():
                x = model.decode(generate(model.denoiser, args.n, model.shape, seed=seed, steps=steps,
                                          sampler=sampler, schedule=schedule, stats=stats))
            return x, stats["nfe"]
        return draw

    def cascade(base, sr, u, sampler, schedule, real: bool = False):
        def draw(seed):
            stats: dict = {}
            with torch.no_grad():
                if real:  # the stage alone: the real images' 14x14 versions
                    pick = torch.randperm(len(base), generator=torch.Generator().manual_seed(seed))[:args.n]
                    low, nfe = base[pick], 0
                else:
                    low = generate(base.denoiser, args.n, base.shape, seed=seed, steps=NFE, sampler=sampler,
                                   schedule=schedule, stats=stats).clamp(-1, 1)
                    nfe = stats["nfe"]
                x = upscale(sr.denoiser, low, (28, 28), aug_level=u, seed=seed,
                            generate_kwargs=dict(steps=NFE, sampler=sampler, schedule=schedule, stats=stats))
            return x, nfe + stats["nfe"]
        return draw

    rows = []
    models = {name: load_model(work / name) for name in ("pixel", "latent", "base14", "sr", "sr-noaug")}
    low_real = load_dataset("mnist", image_size=14).x
    def reconstructions(seed):  # the first stage's floor: the data through the autoencoder, no diffusion
        idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:args.n]
        with torch.no_grad():
            return models["latent"].decode(models["latent"].encode(data.x[idx])), 0
    rows.append({"name": "reconstructions", "sampler": None, **score("autoencoder reconstructions of the data",
                                                                     reconstructions)})
    for sampler, schedule in SAMPLERS:
        how = f"{sampler}{', ' + schedule if schedule else ''}"
        rows.append({"name": "pixel", "sampler": how, **score(f"pixel (demo), {how}",
                                                              one_stage(models["pixel"], sampler, schedule))})
        rows.append({"name": "pixel-40", "sampler": how, **score(f"pixel (demo), {how}, 2 x {NFE} steps",
                                                                 one_stage(models["pixel"], sampler, schedule,
                                                                           2 * NFE))})
        rows.append({"name": "latent", "sampler": how, **score(f"latent (4x7x7), {how}",
                                                               one_stage(models["latent"], sampler, schedule))})
        for name, us in (("sr", levels), ("sr-noaug", [0.0])):
            for u in us:
                rows.append({"name": name, "aug_level": u, "sampler": how,
                             **score(f"cascade 14 -> 28, {name}, u = {u:g}, {how}",
                                     cascade(models["base14"], models[name], u, sampler, schedule))})
                rows.append({"name": f"{name}-real", "aug_level": u, "sampler": how,
                             **score(f"  stage alone on real 14x14, {name}, u = {u:g}",
                                     cascade(low_real, models[name], u, sampler, schedule, real=True))})
    rows.append(timing(models, SAMPLERS[0]))
    grid = torch.cat([r.pop("_grid") for r in rows if r["sampler"] == "dpmpp_2m_sde"
                      and r["name"] in ("pixel", "latent", "sr", "sr-noaug")])
    order = [r["label"] for r in rows if r["sampler"] == "dpmpp_2m_sde" and r["name"] in ("pixel", "latent", "sr",
                                                                                         "sr-noaug")]
    for r in rows:
        r.pop("_grid", None)
    write_result("latent_cascade", {"n": args.n, "seeds": args.seeds, "nfe": NFE, "budget_min": budget,
                                    "trained": list(trained.values()), "rows": rows, "evaluator": evaluator.info})
    save_picture(grid, FIGURES / "latent_cascade_grid.png", nrow=8, scale=2)
    print("grid rows, top to bottom: " + "; ".join(order))
    return verdict(claims(rows, list(trained.values())))


EQUAL_MINUTES = 1.1  # a row's training minutes (its first stages included) may exceed the pixel model's by this


def claims(rows: list, trained: Optional[list] = None) -> list:
    """The issue's latent goal at the better sampler of each model, augmentation beating no augmentation, and (with
    `trained`) whether the latent and cascade rows really trained for no more than the pixel model's minutes."""
    def best(name):
        candidates = [r for r in rows if r["name"] == name]
        return min(candidates, key=lambda r: r["fd"]) if candidates else None
    out = []
    pixel, latent = best("pixel"), best("latent")
    timed = next((r for r in rows if r["name"] == "timing"), None)
    if pixel and latent and timed:
        t = timed["s_per_image"]
        speed = t["pixel"] / t["latent"]
        out.append((f"latent sampling {speed:.2f}x faster per image than pixel at {timed['nfe']} NFE "
                    f"({timed['sampler']}, decoding included; timed interleaved); goal 3x", speed >= 3))
    if pixel and latent:
        out.append((f"latent FD {latent['fd']:.3f} is {latent['fd'] / pixel['fd']:.2f}x the pixel model's "
                    f"{pixel['fd']:.3f} (each at its better sampler); goal 1.2x", latent["fd"] <= 1.2 * pixel["fd"]))
    aug, noaug = best("sr"), best("sr-noaug")
    if aug and noaug:
        out.append((f"noise-conditioning augmentation: cascade FD {aug['fd']:.3f} (u = {aug['aug_level']:g}) against "
                    f"{noaug['fd']:.3f} without; the paper finds it crucial", aug["fd"] < noaug["fd"]))
    minutes = {r["name"]: r["train_min"] for r in trained or []}
    for label, parts in (("latent", ("autoencoder", "latent")), ("cascade", ("base14", "sr"))):
        if "pixel" in minutes and all(k in minutes for k in parts):
            total = sum(minutes[k] for k in parts)
            out.append((f"{label} trained {' + '.join(f'{minutes[k]:.2f}' for k in parts)} = {total:.2f} min against "
                        f"the pixel model's {minutes['pixel']:.2f} ({total / minutes['pixel']:.2f}x): equal minutes "
                        f"within {EQUAL_MINUTES}x", total <= EQUAL_MINUTES * minutes["pixel"]))
    return out


if __name__ == "__main__":
    sys.exit(main())
