"""LSGM end to end (Vahdat et al. 2021) against the two-stage latent model and the pixel model at equal minutes, MNIST-5k.

- pixel: the demo (configs/demo.yaml), trained first; its training wall time is the budget B.
- autoencoder: latent_cascade's KL autoencoder (28x28 -> 4x7x7, `--ae-steps`); its minutes count against both latent
  rows, which start from it.
- two-stage: a score prior on the frozen autoencoder's latents (Rombach et al. 2022), for what is left of B.
- joint: objective lsgm from the same autoencoder: encoder, decoder and prior trained together on the bound (the VAE
  phase likelihood-weighted on every 8th step, the prior phase unweighted on every step, t importance-sampled), for
  the same minutes.
Both priors are one network: the demo's U-Net without its 2x2 patching, on the VP SDE, eps with the mixed score
(mixed_score 0.5); so the rows differ only in how the first stage is trained. Scores: the bound in bits/dim of the
8-bit data on `--n-nll` examples (latent rows: -ELBO through the VAE, the prior's cross entropy likelihood-weighted,
`--t-draws` draws of t per example; pixel: the discrete L_vlb with 100 strata of its 1000 steps), and Frechet
distance, precision and recall in the library's classifier features of `--n` samples at NFE 5, 10, 20 and 50 of
dpmpp_2m (deterministic: the paper's claim is about the smoother latent ODE). Claims, said either way: the joint bound
below the two-stage bound; the joint model's best distance at most 1.2x the two-stage's; for the same distance (the
worse of the two best), the joint prior needs at least 2x fewer NFE than the pixel model (log-linear between grid
points); and equal minutes. Writes benchmarks/results/lsgm_mnist.json, docs/figures/lsgm_mnist.png (samples, one row
per model at 20 NFE) and docs/figures/lsgm_nfe_fd.png. Run it alone: it times training.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).parent))
from common import EqualMinutes, demo_config, merged, save_figure, verdict, write_result  # noqa: E402

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "figures"
NFES = (5, 10, 20, 50)
SAMPLER = "dpmpp_2m"
MODELS = ("pixel", "two-stage", "joint")
# The VAE's phase on every 8th step: at this budget a VAE step costs about 4 prior steps, and the prior needs the steps
# (short probes at about 1.2 min: every step with ll weighting FD 5.6, every 4th 2.7, every 8th 1.6 at 20 NFE).
VAE_EVERY = 8


def row_configs(work: Path) -> dict:
    """name -> run config: the demo, and the two latent rows with one prior network on the VP SDE."""
    pixel = demo_config({"train": {"progress": False, "ema_profiles": [], "sample_every": 0}})
    pixel.pop("sample", None)
    prior = merged(pixel, {"latent": str(work / "autoencoder"), "net": {"patch_size": 1}, "prediction": "eps",
                           "mixed_score": 0.5})
    prior["process"] = {"kind": "vp"}
    joint = merged(prior, {"objective": "lsgm"})
    joint["loss"] = {"vae_every": VAE_EVERY}  # the prior unweighted, t importance-sampled
    return {"pixel": pixel, "two-stage": prior, "joint": joint}


def nfe_to_reach(curve: list, target: float) -> Optional[float]:
    """The NFE at which a model's distance first reaches `target` ((nfe, fd) points, log-linear in between); None if
    it never does. At the first grid point the answer is that point (an upper bound)."""
    curve = sorted(curve)
    for i, (nfe, fd) in enumerate(curve):
        if fd <= target:
            if i == 0:
                return float(nfe)
            (n0, f0), (n1, f1) = curve[i - 1], (nfe, fd)
            w = (f0 - target) / (f0 - f1)
            return math.exp(math.log(n0) + w * (math.log(n1) - math.log(n0)))
    return None


def claims(rows: list, bounds: dict, trained: Optional[list] = None) -> list:
    """The issue's three goals and equal minutes, from the scored rows and the bounds in bits/dim."""
    out = []
    if "joint" in bounds and "two-stage" in bounds:
        j, t = bounds["joint"], bounds["two-stage"]
        out.append((f"joint bound {j['bound_bpd']:.3f} +- {j['bound_ci95']:.3f} bits/dim against the two-stage "
                    f"model's {t['bound_bpd']:.3f} +- {t['bound_ci95']:.3f}: goal lower",
                    j["bound_bpd"] + j["bound_ci95"] < t["bound_bpd"] - t["bound_ci95"]))
    curves = {m: [(r["nfe"], r["fd"]) for r in rows if r["name"] == m] for m in MODELS}
    best = {m: min(fd for _, fd in c) for m, c in curves.items() if c}
    if "joint" in best and "two-stage" in best:
        ratio = best["joint"] / best["two-stage"]
        out.append((f"joint best FD {best['joint']:.3f} is {ratio:.2f}x the two-stage model's {best['two-stage']:.3f}; "
                    f"goal at most 1.2x", ratio <= 1.2))
    if "joint" in best and "pixel" in best:
        target = max(best["joint"], best["pixel"])
        nj, npx = nfe_to_reach(curves["joint"], target), nfe_to_reach(curves["pixel"], target)
        ratio = npx / nj
        first = min(n for n, _ in curves["joint"])
        out.append((f"to reach FD {target:.3f} the pixel model needs {npx:.1f} NFE, the joint prior "
                    f"{'at most ' if nj == first else ''}{nj:.1f}: {ratio:.2f}x fewer; goal 2x", ratio >= 2))
    if trained:
        minutes = {r["name"]: r["train_min"] for r in trained}
        for name in ("two-stage", "joint"):
            if {"pixel", "autoencoder", name} <= set(minutes):
                total = minutes["autoencoder"] + minutes[name]
                out.append((f"{name} trained {minutes['autoencoder']:.2f} + {minutes[name]:.2f} = {total:.2f} min "
                            f"against the pixel model's {minutes['pixel']:.2f} ({total / minutes['pixel']:.2f}x): "
                            f"equal minutes within {EqualMinutes.TOLERANCE}x",
                            total <= EqualMinutes.TOLERANCE * minutes["pixel"]))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default=str(ROOT / "runs" / "lsgm_mnist"), help="where the runs go (a finished run is "
                   "scored again without training)")
    p.add_argument("--n", type=int, default=1000, help="samples per score")
    p.add_argument("--n-nll", type=int, default=500, dest="n_nll", help="examples per bound")
    p.add_argument("--t-draws", type=int, default=4, dest="t_draws", help="draws of t per example in a latent bound")
    p.add_argument("--ae-steps", type=int, default=300, dest="ae_steps", help="autoencoder training steps")
    args = p.parse_args()
    for flag, value, least in (("--n", args.n, 10), ("--n-nll", args.n_nll, 2), ("--t-draws", args.t_draws, 1),
                               ("--ae-steps", args.ae_steps, 1)):
        if value < least:
            p.error(f"{flag}: expected an integer >= {least}, got {value}")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from denoisekit.data import load_dataset
    from denoisekit.eval import Evaluator
    from denoisekit.images import save_picture
    from denoisekit.likelihood import data_nll, joint_nll
    from denoisekit.models import load_model
    from denoisekit.objectives import LatentScoreModel
    from denoisekit.samplers import generate
    work = Path(args.work)
    trainer = EqualMinutes(work, row_configs(work), reference="pixel")
    trained: dict = {"pixel": trainer.train("pixel")}
    budget = trained["pixel"]["train_min"]
    trained["autoencoder"] = trainer.autoencoder(args.ae_steps)
    for name in ("two-stage", "joint"):
        trained[name] = trainer.train(name, budget - trained["autoencoder"]["train_min"])

    data = load_dataset("mnist")
    models = {name: load_model(work / name) for name in MODELS}
    pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(1))[:args.n_nll]
    bounds = {}
    for name, model in models.items():
        if name == "pixel":
            r = data_nll(model.denoiser, data.x[pick], method="bound", terms=100, progress=False)
        else:
            joint = model.joint or LatentScoreModel(model.codec, model.denoiser, list(model.data_shape),
                                                    list(model.shape))
            r = joint_nll(joint, data.x[pick], t_draws=args.t_draws, progress=False)
        bounds[name] = {k: v for k, v in r.items() if k.endswith(("_bpd", "_ci95"))}
        print(f"{name:10s} bound {r['bound_bpd']:.3f} +- {r['bound_ci95']:.3f} bits/dim"
              + "".join(f", {k} {r[k + '_bpd']:.3f}" for k in ("rec", "neg_entropy", "cross_entropy")
                        if k + "_bpd" in r), flush=True)

    evaluator = Evaluator(data, progress=False)
    rows, grid = [], []
    for name, model in models.items():
        for nfe in NFES:
            stats: dict = {}
            with torch.no_grad():
                x = model.decode(generate(model.denoiser, args.n, model.shape, seed=0, steps=nfe, sampler=SAMPLER,
                                          stats=stats)).clamp(-1, 1)
            m = evaluator.evaluate(x.cpu())
            rows.append({"name": name, "nfe": stats["nfe"], "fd": m["fd"], "precision": m["precision"],
                         "recall": m["recall"]})
            print(f"{name:10s} NFE {stats['nfe']:3d}  FD {m['fd']:.3f}  precision {m['precision']:.3f}  recall "
                  f"{m['recall']:.3f}", flush=True)
            if nfe == 20:
                grid.append(x[:10].cpu())

    save_picture(torch.cat(grid), FIGURES / "lsgm_mnist.png", nrow=10, scale=2)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name in MODELS:
        pts = sorted((r["nfe"], r["fd"]) for r in rows if r["name"] == name)
        ax.plot(*zip(*pts), marker="o", label=name)
    ax.set(xscale="log", yscale="log", xlabel=f"NFE ({SAMPLER})", ylabel="Frechet distance (classifier features)",
           title="MNIST-5k, equal training minutes")
    ax.legend()
    save_figure(fig, FIGURES / "lsgm_nfe_fd.png")
    write_result("lsgm_mnist", {"n": args.n, "n_nll": args.n_nll, "t_draws": args.t_draws, "sampler": SAMPLER,
                                "budget_min": budget, "trained": list(trained.values()), "bounds": bounds,
                                "rows": rows, "evaluator": evaluator.info})
    print("sample rows, top to bottom: " + ", ".join(MODELS))
    return verdict(claims(rows, bounds, list(trained.values())))


if __name__ == "__main__":
    sys.exit(main())
