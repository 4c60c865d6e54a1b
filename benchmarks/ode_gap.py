"""Why deterministic samplers lose to stochastic ones on a trained model, and how much of the gap each cause holds.

On one trained MNIST-5k run, every point at 20 network evaluations and scored by the Frechet distance of 1,000
samples: (1) DDIM from eta = 0 (the probability-flow ODE) to eta = 1 (ancestral), one noise draw: the gap as a
function of injected noise alone; (2) the best fixed ODE solvers over the schedules (where the steps go, and whether
sampling starts at the top noise level, 'leading', or lower); (3) the post-hoc EMA length for the best deterministic
and the best stochastic sampler (Karras et al. 2024), when the run kept EMA profiles: a model averaged over longer or
shorter spans may suit the ODE differently. Verdict: the best deterministic point within 1.3x of the best stochastic
one (the quality-per-CPU-minute issue's goal). Writes benchmarks/results/ode_gap.json.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import verdict, write_result  # noqa: E402

from denoisekit.data import load_dataset  # noqa: E402
from denoisekit.eval import Evaluator  # noqa: E402
from denoisekit.models import load_denoiser  # noqa: E402
from denoisekit.samplers import generate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GOAL_NFE, GOAL_RATIO = 20, 1.3
SCHEDULES = ("uniform", "leading", "quadratic", "logsnr", "karras")
EMA_WIDTHS = (0.05, 0.1, 0.2)


def points(stochastic_only: bool = False) -> list:
    """(group, label, sampler, steps, schedule, options, stochastic) at 20 NFE."""
    out = [("eta", f"DDIM eta {eta}", "ddim", 20, "uniform", {"eta": eta}, eta > 0) for eta in (0.0, 0.5, 1.0)]
    out += [("stochastic", "DDPM (beta-tilde)", "ddpm", 20, None, {"variance": "beta_tilde"}, True),
            ("stochastic", "DPM-Solver++(2M) SDE", "dpmpp_2m_sde", 20, None, {}, True)]
    if stochastic_only:
        return out
    out += [("schedule", f"DPM-Solver++(2M), {s}", "dpmpp_2m", 20, s, {}, False) for s in SCHEDULES]
    out += [("schedule", f"UniPC, {s}", "unipc", 20, s, {}, False) for s in ("logsnr", "karras")]
    out += [("schedule", "Heun, karras", "heun", 10, "karras", {}, False)]
    return out


def claims(rows: list) -> list:
    """The best deterministic point at most GOAL_RATIO x the best stochastic point's FD."""
    det = [r for r in rows if not r["stochastic"]]
    sto = [r for r in rows if r["stochastic"]]
    if not det or not sto:
        raise ValueError("both a deterministic and a stochastic sampler must be scored")
    d, s = min(det, key=lambda r: r["fd"]), min(sto, key=lambda r: r["fd"])
    return [(f"best deterministic ({d['label']}, FD {d['fd']:.3f}) within {GOAL_RATIO}x of the best stochastic "
             f"({s['label']}, FD {s['fd']:.3f}) at {GOAL_NFE} NFE: {d['fd'] / s['fd']:.2f}x",
             d["fd"] <= GOAL_RATIO * s["fd"])]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default=str(ROOT / "runs" / "ablation" / "demo"), help="a trained run folder")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.n < 2:
        p.error(f"--n: expected at least 2 samples, got {args.n}")
    if not (Path(args.run) / "checkpoints").is_dir():
        p.error(f"--run: {args.run} is not a trained run folder")
    denoiser, config = load_denoiser(args.run)
    evaluator = Evaluator(load_dataset(config["run"]["data"]), progress=False)
    shape = tuple(config["data"]["shape"])
    rows = []

    def score(group, label, sampler, steps, schedule, options, stochastic, model=denoiser, **extra):
        stats: dict = {}
        x = generate(model, args.n, shape, seed=args.seed, steps=steps, sampler=sampler, schedule=schedule,
                     stats=stats, **options)
        row = {"group": group, "label": label, "sampler": sampler, "steps": steps, "schedule": schedule,
               "options": options, "stochastic": stochastic, "nfe": stats["nfe"],
               "fd": evaluator.evaluate(x.cpu())["fd"], **extra}
        rows.append(row)
        print(f"{group:10s} {label:40s} NFE {row['nfe']:3d}  FD {row['fd']:.3f}", flush=True)
        return row

    for point in points():
        score(*point)
    if (Path(args.run) / "ema_profiles").is_dir():
        from denoisekit.train.posthoc_ema import reconstruct
        best_det = min((r for r in rows if not r["stochastic"]), key=lambda r: r["fd"])
        best_sto = min((r for r in rows if r["stochastic"]), key=lambda r: r["fd"])
        model, _ = load_denoiser(args.run)
        for width in EMA_WIDTHS:
            weights, _ = reconstruct(args.run, width)
            model.load_state_dict(weights)
            for r in (best_det, best_sto):
                score("ema", f"{r['label']}, post-hoc EMA {width}", r["sampler"], r["steps"], r["schedule"],
                      r["options"], r["stochastic"], model=model, sigma_rel=width)
    write_result("ode_gap", {"run": str(args.run), "n": args.n, "seed": args.seed, "rows": rows,
                             "evaluator": evaluator.info})
    return verdict(claims(rows))


if __name__ == "__main__":
    sys.exit(main())
