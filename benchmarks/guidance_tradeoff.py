"""The fidelity-diversity trade-off of guidance on MNIST-5k (issue 10): class accuracy (by the evaluator's reference
classifier), Frechet distance, precision and recall as functions of the guidance scale, for classifier-free guidance
(w) on a class-conditional model trained with label dropout, and for classifier guidance (s) of an unconditional model
by a noisy classifier. Every setting draws the same balanced labels from the same noises with a 20-step sampler.

Trains what it needs into runs/ first (the demo configuration with class_cond: true; the demo model; a noisy
classifier), then writes benchmarks/results/guidance_tradeoff.json, docs/figures/guidance_tradeoff.png and
docs/figures/cfg_grid.png.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import demo_config, display_path, merged, save_figure, verdict, write_result  # noqa: E402

from denoisekit.data import load_dataset  # noqa: E402
from denoisekit.eval import Evaluator  # noqa: E402
from denoisekit.guidance import ClassifierFreeGuidance, ClassifierGuidance  # noqa: E402
from denoisekit.images import save_picture  # noqa: E402
from denoisekit.recipes import RunConfig, train_run  # noqa: E402
from denoisekit.samplers import balanced_labels, generate  # noqa: E402
from denoisekit.models import load_denoiser  # noqa: E402
from denoisekit.recipes.classifier import accuracy_by_noise_level, train_classifier_run  # noqa: E402
from denoisekit.models import load_classifier  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLASSIFIER = {"data": "mnist", "net": {"patch_size": 2, "channels": 32, "channel_mult": [1, 2, 2],
                                       "num_res_blocks": 1, "attention_levels": [1, 2]},
              "train": {"steps": 1500, "batch_size": 64, "lr": 1e-3, "lr_schedule": "cosine", "warmup_steps": 50,
                        "ema_decay": 0.999, "checkpoint_every": 500, "log_every": 100}}


def ensure(run: Path, what: str, train) -> None:
    if not (run / "checkpoints").exists():
        print(f"no {what} at {run}: training it first", flush=True)
        t0 = time.perf_counter()
        train()
        print(f"trained {what} in {time.perf_counter() - t0:.0f}s", flush=True)


def plot(rows: list, path: Path, title: str) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    for ax, kind, xlabel in zip(axes, ("cfg", "classifier"), ("classifier-free guidance scale w",
                                                               "classifier guidance scale s")):
        rs = sorted((r for r in rows if r["kind"] == kind), key=lambda r: r["scale"])
        xs = [r["scale"] for r in rs]
        for key, style in (("class_accuracy", "o-"), ("precision", "s-"), ("recall", "^-")):
            ax.plot(xs, [r[key] for r in rs], style, label=key.replace("_", " "))
        ax.set_xlabel(xlabel), ax.set_ylim(0, 1.02), ax.grid(alpha=0.3)
        fd = ax.twinx()
        fd.plot(xs, [r["fd"] for r in rs], "k--", marker="D", label="Frechet distance (right)")
        fd.set_ylabel("Frechet distance")
        lines = ax.get_legend_handles_labels()
        more = fd.get_legend_handles_labels()
        ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc="lower left")
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cc-run", default=str(ROOT / "runs" / "guidance_cc"), help="class-conditional model (trained "
                   "with the demo configuration and class_cond: true if missing)")
    p.add_argument("--uncond-run", default=str(ROOT / "runs" / "demo"), help="unconditional model (the demo)")
    p.add_argument("--classifier-run", default=str(ROOT / "runs" / "guidance_classifier"))
    p.add_argument("--sampler", default="dpmpp_2m")
    p.add_argument("--steps", type=int, default=20, help="sampler steps (network calls; CFG batches two branches "
                   "into each)")
    p.add_argument("--n", type=int, default=1000, help="samples per setting (balanced over the 10 classes)")
    p.add_argument("--ws", default="0,0.5,1,2,3,4,6")
    p.add_argument("--ss", default="0,1,2,4,6,10", help="classifier guidance scales ('' to skip)")
    p.add_argument("--name", default="guidance_tradeoff", help="the results file (benchmarks/results/NAME.json)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--figure", default=str(ROOT / "docs" / "figures" / "guidance_tradeoff.png"))
    p.add_argument("--grid", default=str(ROOT / "docs" / "figures" / "cfg_grid.png"))
    args = p.parse_args()
    cc_run, unc_run, clf_run = Path(args.cc_run), Path(args.uncond_run), Path(args.classifier_run)
    cc_cfg = merged(demo_config(), {"class_cond": True})
    ensure(cc_run, "class-conditional model", lambda: train_run(RunConfig.from_dict(cc_cfg), cc_run))
    ensure(unc_run, "unconditional model", lambda: train_run(RunConfig.from_dict(demo_config()), unc_run))
    ensure(clf_run, "noisy classifier", lambda: train_classifier_run(RunConfig.from_dict(CLASSIFIER), clf_run))

    cc, cc_config = load_denoiser(cc_run, device=args.device)
    unc, _ = load_denoiser(unc_run, device=args.device)
    classifier, _ = load_classifier(clf_run, device=args.device)
    ds = load_dataset("mnist")
    evaluator = Evaluator(ds, device=args.device)
    clf_acc = accuracy_by_noise_level(classifier, ds)
    labels = balanced_labels(args.n, 10, args.device)
    shape = tuple(cc_config["data"]["shape"])
    settings = ([("cfg", float(w)) for w in args.ws.split(",") if w] +
                [("classifier", float(s)) for s in args.ss.split(",") if s])
    rows = []
    for kind, scale in settings:
        model = (ClassifierFreeGuidance(cc, scale) if kind == "cfg"
                 else ClassifierGuidance(unc, classifier.log_prob, scale))
        stats: dict = {}
        t0 = time.perf_counter()
        x = generate(model, args.n, shape, seed=0, steps=args.steps, sampler=args.sampler, labels=labels,
                     stats=stats)
        seconds = time.perf_counter() - t0
        m = evaluator.evaluate(x.cpu(), labels.cpu())
        rows.append({"kind": kind, "scale": scale, "calls": stats["nfe"],
                     "network_evaluations": stats["nfe"] * (2 if kind == "cfg" else 1),
                     "class_accuracy": m["class_accuracy"], "fd": m["fd"], "precision": m["precision"],
                     "recall": m["recall"], "classifier_score": m["classifier_score"], "sample_seconds": seconds})
        print(f"{kind:10s} scale {scale:5.1f}  accuracy {m['class_accuracy']:.3f}  FD {m['fd']:7.3f}  "
              f"precision {m['precision']:.3f}  recall {m['recall']:.3f}  ({seconds:.0f}s)", flush=True)
        if kind == "cfg" and scale == 3.0 and args.grid:
            grid_labels = torch.arange(10, device=args.device).repeat_interleave(8)
            g = generate(model, 80, shape, seed=1, steps=args.steps, sampler=args.sampler, labels=grid_labels)
            save_picture(g, args.grid, nrow=8, scale=2)
    title = (f"MNIST-5k, {args.n} samples a point, {args.sampler} with {args.steps} steps; CFG: {cc_run.name} "
             f"(label dropout 0.1); classifier guidance: {unc_run.name} + {clf_run.name}")
    fig = plot(rows, Path(args.figure), title) if args.figure else None
    cfg_rows = [r for r in rows if r["kind"] == "cfg"]
    goal = next((r["scale"] for r in cfg_rows if r["scale"] <= 3 and r["class_accuracy"] >= 0.97), None)
    cls = [r["class_accuracy"] for r in sorted((r for r in rows if r["kind"] == "classifier"), key=lambda r: r["scale"])]
    result = {"n": args.n, "sampler": args.sampler, "steps": args.steps, "device": args.device, "rows": rows,
              "classifier_accuracy_by_t": clf_acc, "evaluator": evaluator.info,
              "cfg_goal_97_at_w": goal, "classifier_accuracy_monotone": cls == sorted(cls),
              "figure": display_path(fig) if fig else None, "grid": display_path(args.grid) if args.grid else None,
              "runs": {"cfg": str(cc_run), "uncond": str(unc_run), "classifier": str(clf_run)}}
    path = write_result(args.name, result)
    print(f"wrote {', '.join(str(f) for f in (path, fig, args.grid) if f)}")
    return verdict(claims(result))


def claims(result: dict) -> list:
    """CFG reaches 97% class accuracy at some w <= 3; classifier guidance's accuracy rises with its scale."""
    goal = result["cfg_goal_97_at_w"]
    out = [(f"CFG at least 97% class accuracy at some w <= 3 ({result['sampler']}, {result['steps']} steps)"
            + (f": at w = {goal:g}" if goal is not None else ""), goal is not None)]
    if any(r["kind"] == "classifier" for r in result["rows"]):
        out.append(("classifier guidance's class accuracy rises monotonically with its scale",
                    result["classifier_accuracy_monotone"]))
    return out


if __name__ == "__main__":
    sys.exit(main())
