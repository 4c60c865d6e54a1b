"""Which training settings give the best MNIST-5k model for the demo's minutes? Each row trains a variant of
configs/demo.yaml for the demo's step count (rows whose step costs more or less get the steps the same minutes buy,
from a timing of both steps in this run), keeps post-hoc EMA profiles, and is scored with `denoisekit eval`'s
evaluator: 1,000 samples at 20 NFE from stochastic and deterministic samplers, the best of each over --seeds.

Then the FD against the EMA length, reconstructed after training from one run's two profiles (post-hoc EMA, Karras
et al. 2024). The verdict is the issue's goal: the best row's FD at most 0.5x the demo row's, with the best stochastic
and with the best deterministic sampler. Run alone (training is timed). Writes benchmarks/results/ablation.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, demo_config, display_path, mean_se, merged, verdict, write_result  # noqa: E402

from denoisekit.data import load_dataset  # noqa: E402
from denoisekit.eval import Evaluator  # noqa: E402
from denoisekit.models import load_denoiser  # noqa: E402
from denoisekit.recipes import RunConfig, train_run  # noqa: E402
from denoisekit.samplers import generate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GOAL_NFE, GOAL_RATIO = 20, 0.5
PROFILES = [0.05, 0.1]
EMA_CURVE = [0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25]
EDM_VE = {"kind": "ve", "sigma_min": 0.002, "sigma_max": 80.0}  # EDM's noise range (Karras et al. 2022, Table 1)

VARIANTS = {  # name: (what it is, the overrides of configs/demo.yaml)
    "demo": ("the demo: eps, uniform t, linear betas, lr 1e-3 cosine, EMA 0.999", {}),
    "edm": ("EDM: VE sigma in [0.002, 80], log-normal sigma, preconditioned (sampled over the same range)",
            {"process": EDM_VE, "prediction": "edm", "loss": {"t_sampling": "lognormal"}}),
    "v": ("v-prediction", {"prediction": "v"}),
    "min-snr-5": ("eps with min-SNR-5 weighting", {"loss": {"min_snr_gamma": 5}}),
    "lr-2e-3": ("learning rate 2e-3", {"train": {"lr": 2e-3}}),
    "lr-5e-4": ("learning rate 5e-4", {"train": {"lr": 5e-4}}),
    "batch-64": ("batch 64 for the same minutes", {"train": {"batch_size": 64}}),
    "v-min-snr-5": ("v-prediction with min-SNR-5 weighting", {"prediction": "v", "loss": {"min_snr_gamma": 5}}),
    "edm-uniform": ("EDM preconditioning on DDPM's process, trained on the sampler's own levels (uniform t)",
                    {"prediction": "edm"}),
}
# (label, sampler, steps, options, stochastic): 20 network evaluations each (Heun: 10 steps of 2, less the last)
SAMPLERS = [("DDPM (beta-tilde)", "ddpm", 20, {"variance": "beta_tilde"}, True),
            ("DPM-Solver++(2M) SDE", "dpmpp_2m_sde", 20, {}, True),
            ("DDIM (eta 0)", "ddim", 20, {}, False),
            ("DPM-Solver++(2M)", "dpmpp_2m", 20, {}, False),
            ("Heun", "heun", 10, {}, False)]


def row_config(name: str, steps: int, batch_cost: dict) -> dict:
    """The demo config with the variant applied, the steps its minutes buy, and post-hoc EMA profiles."""
    over = VARIANTS[name][1]
    cfg = merged(demo_config(), over)
    if "process" in over:  # a different kind of process replaces the section, not key by key
        cfg["process"] = dict(over["process"])
    batch = cfg["train"]["batch_size"]
    scaled = int(round(steps * batch_cost.get(demo_config()["train"]["batch_size"], 1.0) / batch_cost.get(batch, 1.0)))
    cfg["train"] = {**cfg["train"], "steps": scaled, "checkpoint_every": scaled, "progress": False,
                    "tensorboard": False, "ema_profiles": PROFILES, "ema_snapshot_every": max(1, scaled // 20)}
    return cfg


def step_seconds(batches, repeats: int = 12) -> dict:
    """Seconds a demo training step takes at each batch size (median of `repeats`), timed here, back to back."""
    from denoisekit.data import ArrayDataset
    from denoisekit.objectives import SimpleLoss
    from denoisekit.recipes import build_denoiser
    out = {}
    for b in batches:
        rc = RunConfig.from_dict(demo_config())
        d = build_denoiser(rc, ArrayDataset(torch.zeros(b, 1, 28, 28), name="mnist-shape"))
        loss, opt = SimpleLoss(**rc.loss), torch.optim.AdamW(d.parameters(), lr=1e-4)
        x, times = torch.rand(b, 1, 28, 28) * 2 - 1, []
        for i in range(repeats + 2):
            t0 = time.perf_counter()
            v = loss(d, x).mean()
            opt.zero_grad(set_to_none=True)
            v.backward()
            opt.step()
            if i >= 2:
                times.append(time.perf_counter() - t0)
        out[b] = sorted(times)[len(times) // 2]
    return out


def score(denoiser, evaluator, n: int, seeds, samplers=SAMPLERS) -> list:
    """FD of each sampler at 20 NFE; the best stochastic and deterministic ones again with the other seeds."""
    rows = []
    for label, sampler, steps, options, stochastic in samplers:
        stats: dict = {}
        x = generate(denoiser, n, (1, 28, 28), seed=seeds[0], steps=steps, sampler=sampler, stats=stats, **options)
        rows.append({"sampler": label, "stochastic": stochastic, "nfe": stats["nfe"],
                     "fd": [evaluator.evaluate(x.cpu())["fd"]]})
    for kind in (True, False):
        best = min((r for r in rows if r["stochastic"] is kind), key=lambda r: r["fd"][0])
        label, sampler, steps, options, _ = next(s for s in samplers if s[0] == best["sampler"])
        for seed in seeds[1:]:
            x = generate(denoiser, n, (1, 28, 28), seed=seed, steps=steps, sampler=sampler, **options)
            best["fd"].append(evaluator.evaluate(x.cpu())["fd"])
    for r in rows:  # a standard error only where there are seeds to spread
        r["fd_mean"], r["fd_se"] = mean_se(r["fd"]) if len(r["fd"]) > 1 else (r["fd"][0], None)
    return rows


def best(rows: list, stochastic: bool) -> dict:
    """The sampler with the lowest mean FD among those scored over every seed, of one kind."""
    full = max(len(r["fd"]) for r in rows)
    return min((r for r in rows if r["stochastic"] is stochastic and len(r["fd"]) == full), key=lambda r: r["fd_mean"])


def claims(result: dict) -> list:
    """The best row's FD at 20 NFE at most GOAL_RATIO x the demo row's, with its best stochastic and with its best
    deterministic sampler (means over the seeds)."""
    rows = {r["variant"]: r for r in result["rows"]}
    if "demo" not in rows or len(rows) < 2:
        raise ValueError("the demo row and at least one variant must be scored")
    out = []
    for kind, word in ((True, "stochastic"), (False, "deterministic")):
        base = best(rows["demo"]["samplers"], kind)["fd_mean"]
        name, row = min(rows.items(), key=lambda kv: best(kv[1]["samplers"], kind)["fd_mean"])
        fd = best(row["samplers"], kind)["fd_mean"]
        out.append((f"best {word} FD at {GOAL_NFE} NFE, {name} ({fd:.3f}) at most {GOAL_RATIO}x the demo's "
                    f"({base:.3f}): {fd / base:.2f}x", fd <= GOAL_RATIO * base))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=demo_config()["train"]["steps"], help="the demo row's steps")
    p.add_argument("--n", type=int, default=1000, help="samples a score")
    p.add_argument("--seeds", default="0,1", help="sample seeds (comma-separated; the first scores every sampler)")
    p.add_argument("--only", help="comma-separated variant names (the demo row is always included)")
    p.add_argument("--runs", default=str(ROOT / "runs" / "ablation"), help="where the rows' run folders go (kept: "
                   "a rerun scores them again without training)")
    p.add_argument("--ema-curve", dest="ema_curve", default="demo", help="the rows whose FD against post-hoc EMA "
                   "length is traced (comma-separated; 'none' for none)")
    args = p.parse_args()
    if args.steps < 1:
        p.error(f"--steps: expected a positive number of steps, got {args.steps}")
    if args.n < 2:
        p.error(f"--n: expected at least 2 samples, got {args.n}")
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        p.error(f"--seeds: expected comma-separated integers, got {args.seeds!r}")
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        p.error(f"--seeds: expected distinct integers >= 0, got {args.seeds!r}")
    names = ["demo"] + [n for n in (args.only.split(",") if args.only else VARIANTS) if n != "demo"]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        p.error(f"--only: unknown variant {unknown[0]!r}; expected some of {', '.join(VARIANTS)}")
    curve_rows = [] if args.ema_curve == "none" else args.ema_curve.split(",")
    if any(n not in names for n in curve_rows):
        p.error(f"--ema-curve: expected rows among those run ({', '.join(names)}) or 'none', got {args.ema_curve!r}")

    batches = sorted({merged(demo_config(), VARIANTS[n][1])["train"]["batch_size"] for n in names})
    seconds = step_seconds(batches)
    cost = {b: s / b for b, s in seconds.items()}  # seconds an image; same minutes = images ~ 1 / cost
    batch_cost = {b: seconds[b] for b in batches}
    print("step seconds by batch size: " + ", ".join(f"{b}: {s:.3f}" for b, s in seconds.items()), flush=True)
    evaluator = Evaluator(load_dataset("mnist"), progress=False)
    rows, result = [], {}
    stored = {}  # rows of an earlier run of this script with the same settings, whose run folders are still here
    previous = RESULTS / "ablation.json"
    if previous.is_file():
        old = json.loads(previous.read_text())
        if (old.get("n"), old.get("seeds")) == (args.n, seeds):
            stored = {r["variant"]: r for r in old["rows"] if (Path(args.runs) / r["variant"] / "checkpoints").is_dir()}
    for name in names:
        if name in stored and (name not in curve_rows or stored[name].get("ema_curve")):
            rows.append(stored[name])
            print(f"{name:10s} (scored earlier: kept from {display_path(previous)})", flush=True)
            continue
        cfg = row_config(name, args.steps, batch_cost)
        run = Path(args.runs) / name
        t0, trained = time.perf_counter(), False
        if not (run / "checkpoints").exists():
            print(f"training {name} ({cfg['train']['steps']} steps) into {run}", flush=True)
            train_run(RunConfig.from_dict(cfg), run, resume=False)
            trained = True
        train_seconds = time.perf_counter() - t0 if trained else None
        denoiser, _ = load_denoiser(run)
        samplers = score(denoiser, evaluator, args.n, seeds)
        row = {"variant": name, "description": VARIANTS[name][0], "overrides": VARIANTS[name][1],
               "steps": cfg["train"]["steps"], "batch_size": cfg["train"]["batch_size"],
               "train_seconds": train_seconds, "samplers": samplers}
        if name in curve_rows:
            row["ema_curve"] = ema_curve(run, evaluator, args.n, seeds[0], best(samplers, True))
        rows.append(row)
        others = [r for v, r in stored.items() if v not in names]  # rows of earlier runs not asked for now
        result = {"steps": args.steps, "n": args.n, "seeds": seeds, "step_seconds": seconds,
                  "seconds_per_image": cost, "rows": rows + others, "evaluator": evaluator.info}
        write_result("ablation", result)  # after each row: a partial run still counts
        s, d = best(samplers, True), best(samplers, False)
        print(f"{name:10s} stochastic {s['sampler']} {s['fd_mean']:.3f}+-{s['fd_se'] or 0:.3f}  deterministic "
              f"{d['sampler']} {d['fd_mean']:.3f}+-{d['fd_se'] or 0:.3f}" +
              (f"  ({train_seconds:.0f}s)" if train_seconds else ""), flush=True)
    return verdict(claims(result))


def ema_curve(run, evaluator, n: int, seed: int, sampler_row: dict) -> list:
    """FD of the post-hoc EMA at each width in EMA_CURVE (reconstructed from the run's profiles), with one sampler."""
    from denoisekit.train.posthoc_ema import reconstruct
    label, sampler, steps, options, _ = next(s for s in SAMPLERS if s[0] == sampler_row["sampler"])
    denoiser, _ = load_denoiser(run)
    out = []
    for sigma_rel in EMA_CURVE:
        weights, report = reconstruct(run, sigma_rel)
        denoiser.load_state_dict(weights)
        x = generate(denoiser, n, (1, 28, 28), seed=seed, steps=steps, sampler=sampler, **options)
        fd = evaluator.evaluate(x.cpu())["fd"]
        out.append({"sigma_rel": sigma_rel, "sampler": label, "fd": fd, "fit_residual": report["relative_residual"]})
        print(f"  post-hoc EMA sigma_rel {sigma_rel:.3f}: FD {fd:.3f} ({label})", flush=True)
    return out


if __name__ == "__main__":
    sys.exit(main())
