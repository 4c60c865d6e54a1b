"""An Imagen-style cascade at small scale (issue 23): a frozen pre-trained text encoder (the noised CLIP's, from
benchmarks/text_mnist.py's run, or trained here), a 14x14 text-conditional base model and a 14 -> 28 text-conditional
super-resolution stage (noise-conditioning augmentation), both reading the same frozen encoder; then high guidance
weights with x0 as predicted, clipped to [-1, 1] at every step (static) or dynamically thresholded (Saharia et al.
2022, sec. 2.3; percentile 0.995), in both stages.

At each w in `--weights` (CFG on the base; dpmpp_2m, 20 NFE a stage), on the 60 prompts of benchmarks/text_mnist.py
(`--per-prompt` each): saturation of the base's samples before clipping (the share of pixels outside [-1, 1], and of
pixels at the ink's ceiling, >= 0.99, against the data's share), and the final 28x28 samples' prompt fidelity (digit
by the reference classifier, attributes by the captions' measurers) and Frechet distance (`--n` samples asked with
training captions). Claims, said either way: at w >= 5 dynamic thresholding leaves fewer pixels out of range than
none, fewer at the ceiling than static clipping, and a digit accuracy at least as high as both. Writes benchmarks/results/imagen_mnist.json and
docs/figures/imagen_cascade.png (one row per mode at the largest w: the base's samples, then their super-resolution).
Run it alone.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import demo_config, train_missing, verdict, write_result  # noqa: E402
from text_mnist import clip_config  # noqa: E402

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "figures"
SAMPLER, NFE, PERCENTILE = "dpmpp_2m", 20, 0.995
GRID = ("a thick seven", "a thin two slanting left", "a small three", "a large eight")


def stage_config(encoder: str, steps: int, sr: bool) -> dict:
    """The demo's U-Net on mnist-captions, text-conditional through the frozen encoder: the base at 14x14 (no 2x2
    patching at that size), or the 14 -> 28 super-resolution stage."""
    cfg = demo_config({"data": "mnist-captions", "text_cond": True, "text": {"encoder": encoder},
                       "train": {"steps": steps, "progress": False, "ema_profiles": [], "sample_every": 0,
                                 "checkpoint_every": 1000}})
    cfg.pop("sample", None)
    if sr:
        cfg["super_resolution"] = {"low_size": 14}
    else:
        cfg["image_size"] = 14
        cfg["net"] = {**cfg["net"], "patch_size": 1, "channel_mult": [1, 2], "attention_levels": [1]}
    return cfg


MODES = ("none", "static", "dynamic")  # x0 as predicted; clipped to [-1, 1] at every step; Imagen's thresholding


def claims(rows: list) -> list:
    """At each w >= 5: dynamic thresholding leaves fewer base pixels out of range than none, fewer at the ceiling than
    static clipping, and a digit accuracy at least as high as both."""
    out = []
    for w in sorted({r["w"] for r in rows if r["w"] >= 5}):
        by = {r["mode"]: r for r in rows if r["w"] == w}
        none, static, dyn = by["none"], by["static"], by["dynamic"]
        out.append((f"w = {w:g}: base pixels out of [-1, 1]: dynamic {dyn['out_of_range']:.4f}, none "
                    f"{none['out_of_range']:.4f}; goal fewer", dyn["out_of_range"] < none["out_of_range"]))
        out.append((f"w = {w:g}: base pixels at the ceiling (>= 0.99): dynamic {dyn['at_ceiling']:.3f}, static "
                    f"{static['at_ceiling']:.3f} (data {dyn['data_at_ceiling']:.3f}); goal fewer",
                    dyn["at_ceiling"] < static["at_ceiling"]))
        out.append((f"w = {w:g}: digit accuracy dynamic {dyn['digit']:.3f}, static {static['digit']:.3f}, none "
                    f"{none['digit']:.3f}; goal at least as high as both",
                    dyn["digit"] >= max(static["digit"], none["digit"])))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default=str(ROOT / "runs" / "imagen_mnist"), help="where the runs go (finished runs are "
                   "scored again without training)")
    p.add_argument("--clip", default=str(ROOT / "runs" / "text_mnist" / "clip"), help="the frozen encoder's train-clip "
                   "run (trained here if missing)")
    p.add_argument("--steps", type=int, default=3000, help="training steps of each stage")
    p.add_argument("--weights", default="1,5,7.5,10", help="comma-separated CFG weights w")
    p.add_argument("--per-prompt", type=int, default=3, dest="per_prompt", help="samples per fidelity prompt")
    p.add_argument("--n", type=int, default=500, help="samples per Frechet distance")
    args = p.parse_args()
    try:
        weights = [float(v) for v in args.weights.split(",")]
    except ValueError:
        p.error(f"--weights: expected comma-separated numbers, got {args.weights!r}")
    for flag, value, least in (("--steps", args.steps, 1), ("--per-prompt", args.per_prompt, 1), ("--n", args.n, 10)):
        if value < least:
            p.error(f"{flag}: expected an integer >= {least}, got {value}")

    from denoisekit.cascade import upscale
    from denoisekit.data import load_dataset
    from denoisekit.eval import Evaluator
    from denoisekit.images import save_row_strip
    from denoisekit.models import load_model
    from denoisekit.recipes import RunConfig, train_run
    from denoisekit.recipes.clip import train_clip_run
    from denoisekit.samplers import generate
    from denoisekit.text import Bins
    from denoisekit.text.fidelity import attribute_prompts, prompt_fidelity
    work, clip = Path(args.work), Path(args.clip)
    minutes = train_missing([
        ("clip", clip, lambda: train_clip_run(RunConfig.from_dict(clip_config(1500)), clip, resume=True)),
        ("base", work / "base",
         lambda: train_run(RunConfig.from_dict(stage_config(str(clip), args.steps, False)), work / "base")),
        ("sr", work / "sr", lambda: train_run(RunConfig.from_dict(stage_config(str(clip), args.steps, True)),
                                              work / "sr"))])
    base, sr = load_model(work / "base"), load_model(work / "sr")
    u = sr.super_resolution.aug_level
    bins = Bins.from_dict(base.record["text"]["bins"])  # measured on the 28x28 digits the captions describe
    data = load_dataset("mnist-captions")
    evaluator = Evaluator(load_dataset("mnist"), progress=False)
    ceiling = float((data.x >= 0.99).double().mean())

    def cascade(prompts: list, w: float, mode: str, seed: int = 0):
        """(the base's samples before clipping, the super-resolved samples): x0 handled per `mode` in both stages."""
        threshold = PERCENTILE if mode == "dynamic" else None
        for stage in (base, sr):
            stage.denoiser.clip_x0 = 1.0 if mode == "static" else None
        denoiser, _ = base.guided(w=w, threshold=threshold)
        low = generate(denoiser, len(prompts), base.shape, seed=seed, steps=NFE, sampler=SAMPLER,
                       labels=base.prompts(prompts))
        x = upscale(sr.guided(threshold=threshold)[0], low.clamp(-1, 1), sr.shape[1:], aug_level=u, seed=seed,
                    labels=sr.prompts(prompts), generate_kwargs=dict(steps=NFE, sampler=SAMPLER))
        return low, x.clamp(-1, 1)

    seen = [q for q in attribute_prompts() for _ in range(args.per_prompt)]
    pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(2))[:args.n]
    rows = []
    for w in weights:
        for mode in MODES:
            t0 = time.perf_counter()
            with torch.no_grad():
                low, x = cascade(seen, w, mode)
                _, logits = evaluator.classifier.features_and_logits(x)
                fid = prompt_fidelity(x, seen, bins, logits.argmax(1))
                fd = evaluator.evaluate(cascade([data.captions[i] for i in pick.tolist()], w, mode, 2)[1])
            rows.append({"w": w, "mode": mode, "out_of_range": float((low.abs() > 1).double().mean()),
                         "at_ceiling": float((low >= 0.99).double().mean()), "data_at_ceiling": ceiling,
                         **{k: v for k, v in fid.items() if not k.startswith("n_")}, "fd": fd["fd"],
                         "seconds": time.perf_counter() - t0})
            r = rows[-1]
            print(f"w {w:4.1f} {mode:7s}: out of range {r['out_of_range']:.4f}, at "
                  f"ceiling {r['at_ceiling']:.3f} (data {ceiling:.3f}) | digit {r['digit']:.3f} thickness "
                  f"{r['thickness']:.3f} slant {r['slant']:.3f} size {r['size']:.3f} | FD {r['fd']:.3f} "
                  f"({r['seconds']:.0f} s)", flush=True)

    k, w_top = 3, max(weights)
    prompts = [q for q in GRID for _ in range(k)]
    with torch.no_grad():  # one row per mode: the base's samples (nearest-neighbour), then their super-resolution
        outs = [cascade(prompts, w_top, mode, seed=3) for mode in MODES]
    grid = [torch.cat([torch.nn.functional.interpolate(low.clamp(-1, 1), size=tuple(sr.shape[1:]), mode="nearest"),
                       x]) for low, x in outs]
    save_row_strip([torch.stack([g[j] for g in grid]).cpu() for j in range(2 * len(prompts))],
                   FIGURES / "imagen_cascade.png", scale=2)
    write_result("imagen_mnist", {"steps": args.steps, "train_min": minutes, "nfe_per_stage": NFE, "sampler": SAMPLER,
                                  "percentile": PERCENTILE, "aug_level": u, "per_prompt": args.per_prompt,
                                  "n": args.n, "rows": rows, "grid": list(GRID), "grid_w": w_top,
                                  "evaluator": evaluator.info})
    print(f"grid: rows {', '.join(MODES)} at w = {w_top:g}; columns: the base's 14x14 samples (nearest-neighbour), "
          f"{k} per prompt ({'; '.join(GRID)}), then their super-resolved 28x28 versions")
    return verdict(claims(rows))


if __name__ == "__main__":
    sys.exit(main())
