"""Improved DDPM on MNIST-5k (issue 11): one training budget, three models, L_simple with fixed variance, L_hybrid
(learned variance) and L_vlb with importance-sampled t, and for each bits/dim by the variational bound (all T terms)
and by the probability-flow ODE (Hutchinson, dequantized), and the Frechet distance at 50 respaced and at 1000
ancestral steps. Nichol & Dhariwal (2021) found that the hybrid objective improves the likelihood at similar sample
quality, and that learned variances sample better than fixed ones with few respaced steps.

Verdicts (exit 1 when missed): the full run judges the likelihood claim (L_hybrid's bound below L_simple's best
fixed-variance bound by more than either 95% interval) and "similar sample quality" (L_hybrid's FD at the long run at
most 1.25x L_simple's best); --fd-seeds judges the few-step claim (the best learned-variance model's 50-step FD below
the best fixed variance's, by more than two standard errors of the paired per-seed difference).

Trains the models into runs/iddpm_* first (the demo configuration, changing only the objective), then writes
benchmarks/results/improved_ddpm.json and docs/figures/vlb_terms.png.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import demo_config, display_path, mean_se, save_figure, train_once, verdict, write_result  # noqa: E402

from denoisekit.data import load_dataset  # noqa: E402
from denoisekit.eval import Evaluator  # noqa: E402
from denoisekit.likelihood import data_nll, variational_bound  # noqa: E402
from denoisekit.samplers import generate  # noqa: E402
from denoisekit.utils import sample_generators  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS = {  # name: (objective, loss section, the variances its samples and bound use)
    "simple": ("simple", {"t_sampling": "uniform"}, ["beta_tilde", "beta"]),
    "hybrid": ("hybrid", {"lam": 0.001, "t_sampling": "uniform"}, ["learned"]),
    "vlb": ("vlb", {"t_sampling": "importance"}, ["learned"]),
}


SIMILAR = 1.25  # "similar sample quality": L_hybrid's FD at the long run at most this times L_simple's best


def likelihood_claims(rows: list, long: int) -> list:
    """Nichol & Dhariwal (2021, sec. 3.1): L_hybrid improves the bound over L_simple at similar sample quality."""
    by = {(r["objective"], r["variance"]): r for r in rows}
    simple, hybrid = [r for r in rows if r["objective"] == "simple"], by.get(("hybrid", "learned"))
    if not simple or hybrid is None:
        raise ValueError("the likelihood claims need the simple and the hybrid model")
    best = min(simple, key=lambda r: r["bound_bpd"])
    gap, noise = best["bound_bpd"] - hybrid["bound_bpd"], max(hybrid["bound_ci95"], best["bound_ci95"])
    out = [(f"likelihood: L_hybrid's bound {hybrid['bound_bpd']:.3f} bits/dim is below L_simple's best fixed-variance "
            f"bound {best['bound_bpd']:.3f} ({best['variance']}) by {gap:.3f}, more than the 95% interval "
            f"{noise:.3f}", gap > noise)]
    if all(f"fd_{long}" in r for r in simple + [hybrid]):
        s, h = min(r[f"fd_{long}"] for r in simple), hybrid[f"fd_{long}"]
        out.append((f"similar sample quality at {long} steps: L_hybrid FD {h:.2f} at most {SIMILAR}x L_simple's "
                    f"best {s:.2f}", h <= SIMILAR * s))
    return out


def few_steps_claim(seed_rows: list) -> list:
    """Nichol & Dhariwal (2021, sec. 3.2): learned variances sample better with few respaced steps; per-seed FDs are
    paired (the same sample seeds for every model), so the difference's standard error is over the seeds."""
    fixed = min((r for r in seed_rows if r["objective"] == "simple"), key=lambda r: r["mean"])
    learned = min((r for r in seed_rows if r["variance"] == "learned"), key=lambda r: r["mean"])
    d = [a - b for a, b in zip(learned["fd_50"], fixed["fd_50"])]
    mean, se = mean_se(d)
    return [(f"few steps: at 50 respaced steps the best learned variance ({learned['objective']}, FD "
             f"{learned['mean']:.3f}) beats the best fixed one ({fixed['variance']}, {fixed['mean']:.3f}): paired "
             f"difference {mean:+.3f} +- {se:.3f} over {len(d)} seeds, beyond two standard errors", mean < -2 * se)]


def model(name: str, steps: int, runs: Path):
    """The trained model `name` (trained first if its run folder has no checkpoint) and the training seconds."""
    objective, loss, _ = MODELS[name]
    cfg = demo_config({"objective": objective, "loss": loss, "train": {"steps": steps, "progress": True},
                       "sample": {"options": {}}})
    return train_once(runs / f"iddpm_{name}", cfg, name)

def plot_terms(terms: dict, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for label, values in terms.items():
        ax.plot(range(len(values)), values, label=label)
    ax.set_yscale("log"), ax.set_xlabel("diffusion step t"), ax.set_ylabel("L_t (bits/dim, batch mean)")
    ax.set_title("Terms of the variational bound on MNIST-5k"), ax.grid(alpha=0.3), ax.legend()
    return save_figure(fig, path)


def refresh_bounds(args, x) -> int:
    """The bound's figures of the rows of --models in NAME.json, recomputed as the full run computes them."""
    import json
    from common import RESULTS
    path = RESULTS / f"{args.name}.json"
    data = json.loads(path.read_text())
    for name in args.models.split(","):
        denoiser, _, _ = model(name, args.steps, args.runs)
        for row in data["rows"]:
            if row["model"] == name:
                nll = data_nll(denoiser, x, method="bound", variance=row["variance"], batch_size=len(x), seed=0)
                row.update({k: nll[k] for k in nll if k.endswith(("_bpd", "_ci95")) and not k.startswith("ode")})
                print(name, row["variance"], f"bound {row['bound_bpd']:.4f} +- {row['bound_ci95']:.4f}", flush=True)
    terms = {}
    for row in data["rows"]:
        denoiser, _, _ = model(row["model"], args.steps, args.runs)
        terms[f"{row['model']} ({row['variance']})"] = bound_terms(denoiser, x, row["variance"])
    figure = plot_terms(terms, ROOT / "docs" / "figures" / f"{args.name.replace('improved_ddpm', 'vlb_terms')}.png")
    out = write_result(args.name, {k: v for k, v in data.items() if k != "machine"})
    print(f"results: {display_path(out)}; figure: {display_path(figure)}")
    return 0


def bound_terms(denoiser, x, variance: str) -> list:
    """L_t by step t, the mean over (at most) 16 of the images."""
    k = min(16, len(x))
    return variational_bound(denoiser, x[:k], variance=variance, generator=sample_generators(1, k)).terms.tolist()


def fd_over_seeds(args, evaluator, seeds: list) -> int:
    """The 50-step Frechet distance of every (model, variance) for several sample seeds: mean and spread."""
    rows = []
    for name in args.models.split(","):
        denoiser, config, _ = model(name, args.steps, args.runs)
        shape = tuple(config["data"]["shape"])
        for variance in MODELS[name][2]:
            fds = []
            for seed in seeds:
                x = generate(denoiser, args.n_fd, shape, seed=seed, steps=50, sampler="ddpm", variance=variance,
                             progress=True)
                fds.append(evaluator.evaluate(x.cpu())["fd"])
            t = torch.tensor(fds, dtype=torch.float64)
            rows.append({"model": name, "objective": MODELS[name][0], "variance": variance, "fd_50": fds,
                         "mean": float(t.mean()), "std": float(t.std()) if len(fds) > 1 else None})
            print(f"{name:8} {variance:10} FD@50 over seeds {seeds}: {float(t.mean()):.3f} +- "
                  f"{float(t.std()) if len(fds) > 1 else float('nan'):.3f}", flush=True)
    path = write_result(f"{args.name}_fd50", {"settings": {"n_fd": args.n_fd, "seeds": seeds, "steps": 50},
                                             "rows": rows})
    print(f"results: {display_path(path)}")
    return verdict(few_steps_claim(rows))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2000, help="training steps of each model (the demo's budget)")
    p.add_argument("--n-nll", type=int, default=64, help="images for the bits/dim estimates")
    p.add_argument("--n-fd", type=int, default=256, help="samples for each Frechet distance")
    p.add_argument("--long", type=int, default=1000, help="steps of the long ancestral run (0: skip it)")
    p.add_argument("--models", default="simple,hybrid,vlb")
    p.add_argument("--runs", type=Path, default=ROOT / "runs", help="where the models are trained (or found)")
    p.add_argument("--name", default="improved_ddpm", help="the results file's name (a smoke run writes elsewhere)")
    p.add_argument("--fd-seeds", default="", help="only the 50-step Frechet distances, once per seed (e.g. 0,1,2,3): "
                   "how much of a difference between models is seed noise; writes NAME_fd50.json")
    p.add_argument("--bound-only", action="store_true", help="recompute only the bound's figures of --models in the "
                   "existing NAME.json (after a change to the bound; the models, images and seeds are the same)")
    args = p.parse_args()
    ds = load_dataset("mnist")
    pick = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[: args.n_nll]
    if args.bound_only:
        return refresh_bounds(args, ds.x[pick])
    evaluator = Evaluator(ds)
    if args.fd_seeds:
        return fd_over_seeds(args, evaluator, [int(v) for v in args.fd_seeds.split(",")])
    rows, terms = [], {}
    for name in args.models.split(","):
        denoiser, config, train_s = model(name, args.steps, args.runs)
        shape = tuple(config["data"]["shape"])
        for variance in MODELS[name][2]:
            row = {"model": name, "objective": MODELS[name][0], "variance": variance, "train_seconds": train_s}
            t0 = time.perf_counter()
            nll = data_nll(denoiser, ds.x[pick], method="bound" if variance != MODELS[name][2][0] else "both",
                           variance=variance, batch_size=args.n_nll, seed=0, progress=True)
            row.update({k: nll[k] for k in nll if k.endswith(("_bpd", "_ci95")) or k == "ode_nfe_per_batch"})
            row["nll_seconds"] = time.perf_counter() - t0
            terms[f"{name} ({variance})"] = bound_terms(denoiser, ds.x[pick], variance)
            for steps in (50, args.long):
                if steps:
                    t0 = time.perf_counter()
                    x = generate(denoiser, args.n_fd, shape, seed=0, steps=steps, sampler="ddpm", variance=variance,
                                 progress=True)
                    m = evaluator.evaluate(x.cpu())
                    row[f"fd_{steps}"] = m["fd"]
                    row[f"precision_{steps}"], row[f"recall_{steps}"] = m["precision"], m["recall"]
                    row[f"sample_seconds_{steps}"] = time.perf_counter() - t0
            rows.append(row)
            print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    print(f"\n{'model':8} {'variance':10} {'bound bpd':>14} {'ODE bpd':>14} {'FD@50':>7} {'FD@' + str(args.long):>7}")
    for r in rows:
        ode = f"{r['ode_bpd']:.3f}+-{r['ode_ci95']:.3f}" if "ode_bpd" in r else "-"
        print(f"{r['model']:8} {r['variance']:10} {r['bound_bpd']:7.3f}+-{r['bound_ci95']:.3f} {ode:>14} "
              f"{r['fd_50']:7.2f} {r.get(f'fd_{args.long}', float('nan')):7.2f}")
    figure = plot_terms(terms, ROOT / "docs" / "figures" / f"{args.name.replace('improved_ddpm', 'vlb_terms')}.png")
    path = write_result(args.name, {
        "data": "mnist (MNIST-5k), first-of-a-seeded-permutation images for bits/dim",
        "settings": {"train_steps": args.steps, "n_nll": args.n_nll, "n_fd": args.n_fd, "long_steps": args.long,
                     "bound": "all T=1000 terms, discretized Gaussian decoder",
                     "ode": "dopri5 rtol=atol=1e-5, one Rademacher probe per image, uniform dequantization",
                     "sampler": "ancestral ddpm; 50 steps = respaced uniform sub-sequence"},
        "rows": rows, "figure": display_path(figure)})
    print(f"results: {display_path(path)}; figure: {display_path(figure)}")
    return verdict(likelihood_claims(rows, args.long))


if __name__ == "__main__":
    sys.exit(main())
