"""The generative learning trilemma on MNIST-5k at equal training minutes: quality (Frechet distance, precision), mode
coverage (recall) and speed (network evaluations and seconds per image) for denoising diffusion GANs at T = 2, 4 and
8 (Xiao et al. 2022), a diffusion-recovery-likelihood EBM (Gao et al. 2021), a plain GAN (the DDGAN generator as a
one-step map from noise: T = 1) and the DDPM demo model at 4, 20 and 100 NFE with its best sampler at each.

The demo model is trained first (configs/demo.yaml) and its training wall time is the budget: every other row is
trained for the steps that budget buys at its own measured seconds per step (the median of timed steps of the real
trainer, back to back in this process), and its actual training time is reported beside it. Every score is the mean
over `--seeds` of `--n` samples in the library's classifier features (`denoisekit eval`'s metrics). Sampling time is
wall seconds per image for `--n` images on this machine's threads. Verdicts: the issue's goals (DDGAN at 4 steps
within 1.5x of the DDPM model's best FD at 100 NFE, at least 3x better than its best at 4 NFE, with a recall at least
0.9x the DDPM model's at 100 NFE). The DDPM model's sampler at each NFE is the best of four on the first seed, then
scored on every seed. Writes benchmarks/results/trilemma.json, docs/figures/trilemma_grid.png and
docs/figures/trilemma.png. Run it alone: it times training.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import (demo_config, display_path, merged, save_figure, seed_list, step_seconds, verdict,  # noqa: E402
                    write_result)

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "figures"
DDPM_NFE = (4, 20, 100)
DDPM_SAMPLERS = (("ddim, trailing", "ddim", "trailing"), ("unipc", "unipc", None),
                 ("dpmpp_2m_sde", "dpmpp_2m_sde", None), ("ddpm", "ddpm", None))
# The DDGAN rows: the demo's U-Net as the generator (x0-prediction, a 32-d latent through the mapping network), the
# same encoder as the discriminator on the stacked pair, Adam betas (0.5, 0.9) and R1 gamma 0.05 (Xiao et al. 2022).
# A 64-channel discriminator with gamma 0.02 (FD 4.4 at T = 4 in a first probe) did not hold up at equal minutes: see
# benchmarks/results/trilemma_disc64.json (FD 49.1 / 19.8 / 11.4 at T = 2 / 4 / 8).
GAN_BASE = {"objective": "ddgan", "prediction": "x0", "net": {"latent_dim": 32},
            "discriminator": {"patch_size": 2, "channels": 32, "channel_mult": [1, 2, 2]},
            "loss": {"r1_gamma": 0.05}, "train": {"lr": 5e-4, "betas": [0.5, 0.9], "warmup_steps": 0}}
# The EBM: the encoder as the energy network, the paper's 6 levels, 10-step chains (a third of the paper's 30, which
# would buy a third of the training steps).
EBM = {"objective": "recovery", "prediction": "eps",
       "net": {"patch_size": 2, "channels": 32, "channel_mult": [1, 2, 2], "num_res_blocks": 1},
       "process": {"kind": "ddpm", "schedule": "drl", "T": 6}, "loss": {"langevin_steps": 10},
       "train": {"lr": 5e-4, "warmup_steps": 0}}


def row_configs() -> dict:
    """name -> (description, run config); the demo's data, U-Net and training settings under each objective."""
    base = demo_config({"train": {"progress": False, "ema_profiles": [], "sample_every": 0}})
    base.pop("sample", None)
    gan = merged({k: v for k, v in base.items() if k not in ("process", "loss")}, GAN_BASE)
    out = {"ddpm": ("DDPM demo model (configs/demo.yaml)", base)}
    for T in (2, 4, 8):
        out[f"ddgan-{T}"] = (f"DDGAN, T = {T}", merged(gan, {"process": {"kind": "ddpm", "schedule": "vp", "T": T}}))
    out["gan"] = ("plain GAN (DDGAN generator as a one-step map: T = 1)",
                  merged(gan, {"process": {"kind": "ddpm", "schedule": "vp", "T": 1}}))
    ebm = merged({k: v for k, v in base.items() if k not in ("process", "loss", "prediction", "net")}, EBM)
    out["ebm"] = ("recovery-likelihood EBM, 6 levels, 10-step chains", ebm)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default=str(ROOT / "runs" / "trilemma"), help="where the runs go (a finished run is "
                   "scored again without training)")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--seeds", type=seed_list, default="0,1,2", help="comma-separated sampling seeds to average")
    p.add_argument("--only", help="comma-separated rows (default: all; ddpm is always trained first)")
    args = p.parse_args()
    seeds = args.seeds
    if args.n < 10:
        p.error(f"--n: expected at least 10 samples, got {args.n}")
    configs = row_configs()
    names = ["ddpm"] + [n for n in (args.only.split(",") if args.only else configs) if n != "ddpm"]
    unknown = [n for n in names if n not in configs]
    if unknown:
        p.error(f"--only: unknown row {unknown[0]!r}; expected some of {', '.join(configs)}")

    from denoisekit.data import load_dataset
    from denoisekit.eval import Evaluator
    from denoisekit.images import save_picture
    from denoisekit.models import load_model
    from denoisekit.recipes import RunConfig, train_run
    from denoisekit.samplers import generate
    from denoisekit.samplers.recorded import fallback_for
    from denoisekit.train import find_checkpoint
    from denoisekit.train.trainer import TrainingDiverged
    work = Path(args.work)
    evaluator = Evaluator(load_dataset("mnist"), progress=False)
    previous, kept = {}, []
    path = ROOT / "benchmarks" / "results" / "trilemma.json"
    if path.is_file():  # rows of an earlier run not asked for now: their training cost and scores
        old = json.loads(path.read_text())
        previous = {r["name"]: r for r in old.get("trained", [])}
        same = (old["n"], old["seeds"]) == (args.n, seeds)
        kept = [r for r in old.get("rows", []) if r["name"] not in names and same]

    def train(name: str, cfg: dict) -> dict:
        """Train the row once: a run folder with a finished record (trained.json) is kept, its cost read back."""
        run = work / name
        record = run / "trained.json"
        if record.is_file() and (run / "checkpoints").exists():
            print(f"{name}: trained earlier in {display_path(run)}", flush=True)
            return json.loads(record.read_text())
        t0 = time.perf_counter()
        print(f"training {name} ({cfg['train']['steps']} steps) into {display_path(run)}", flush=True)
        try:
            train_run(RunConfig.from_dict(cfg), run, resume=False)
            stopped = None
        except TrainingDiverged as e:  # a GAN that collapses is a result: its last good checkpoint is scored
            stopped = str(e)
            print(f"{name}: {stopped}", flush=True)
        out = {"name": name, "steps": cfg["train"]["steps"], "train_min": (time.perf_counter() - t0) / 60,
               "stopped": stopped}
        record.write_text(json.dumps(out))
        return out

    trained = [train("ddpm", configs["ddpm"][1])]
    budget_s = trained[0]["train_min"] * 60
    for name in names[1:]:
        cfg = configs[name][1]
        if not ((work / name / "trained.json").is_file() and (work / name / "checkpoints").exists()):
            sec = step_seconds(cfg)
            cfg = merged(cfg, {"train": {"steps": max(2, round(budget_s / sec))}})
            print(f"{name}: {sec:.3f} s a step, so {cfg['train']['steps']} steps in the demo's "
                  f"{budget_s / 60:.1f} minutes", flush=True)
            row = {**train(name, cfg), "step_s": sec}
            (work / name / "trained.json").write_text(json.dumps(row))
        else:
            row = train(name, cfg)
        trained.append(row)

    def score(model, label: str, sampler: str, steps: int, schedule, shape, use=None) -> dict:
        fds, precs, recs, secs, grid, nfe = [], [], [], [], None, None
        for seed in use or seeds:
            stats: dict = {}
            t0 = time.perf_counter()
            x = generate(model, args.n, shape, seed=seed, steps=steps, sampler=sampler, schedule=schedule,
                         stats=stats).cpu()
            secs.append((time.perf_counter() - t0) / args.n)
            m = evaluator.evaluate(x)
            fds.append(m["fd"]), precs.append(m["precision"]), recs.append(m["recall"])
            grid = x[:16] if grid is None else grid
            nfe = stats["nfe"]
        mean = lambda v: sum(v) / len(v)  # noqa: E731
        return {"label": label, "sampler": sampler, "steps": steps, "schedule": schedule, "nfe": nfe,
                "fd": mean(fds), "fd_seeds": fds, "precision": mean(precs), "recall": mean(recs),
                "s_per_image": mean(secs), "_grid": grid}

    rows, grids = [], {}
    for row in trained:
        name = row["name"]
        model = load_model(work / name)
        shape = model.shape
        if name == "ddpm":
            for nfe in DDPM_NFE:
                candidates = {label: score(model.denoiser, f"DDPM, {label}", sampler, nfe, schedule, shape,
                                           seeds[:1]) for label, sampler, schedule in DDPM_SAMPLERS}
                for c in candidates.values():
                    print(f"  ddpm {c['label']:24s} NFE {c['nfe']:3d}  FD {c['fd']:.3f}  recall {c['recall']:.3f} "
                          f"(seed {seeds[0]})", flush=True)
                label = min(candidates, key=lambda k: candidates[k]["fd"])
                _, sampler, schedule = next(c for c in DDPM_SAMPLERS if c[0] == label)
                best = score(model.denoiser, f"DDPM, {label}", sampler, nfe, schedule, shape)
                best["candidates"] = [{k: v for k, v in c.items() if k != "_grid"} for c in candidates.values()]
                rows.append({"name": name, "method": "DDPM", **best})
        else:
            plan = fallback_for(find_checkpoint(work / name))
            rows.append({"name": name, "method": configs[name][0],
                         **score(model.denoiser, configs[name][0], plan["sampler"], plan["steps"], plan["schedule"],
                                 shape)})
        r = rows[-1]
        print(f"{r['label']:50s} NFE {r['nfe']:4d}  FD {r['fd']:.3f}  precision {r['precision']:.3f}  recall "
              f"{r['recall']:.3f}  {1000 * r['s_per_image']:.2f} ms/image", flush=True)
    for r in rows:
        grids[f"{r['name']}@{r['nfe']}"] = r.pop("_grid", None)
    trained += [r for n, r in previous.items() if n not in names and any(k["name"] == n for k in kept)]
    rows += kept
    write_result("trilemma", {"n": args.n, "seeds": seeds, "budget_min": budget_s / 60, "trained": trained,
                              "rows": rows, "evaluator": evaluator.info})
    order = [k for k in grids if grids[k] is not None]
    save_picture(torch.cat([grids[k][:8] for k in order]), FIGURES / "trilemma_grid.png", nrow=8, scale=2)
    print("grid rows, top to bottom: " + ", ".join(order))
    _plot(rows)
    return verdict(claims(rows))


def claims(rows: list) -> list:
    """The issue's goals for DDGAN at 4 steps against the DDPM model's best at 100 and at 4 NFE."""
    ddpm = {r["nfe"]: r for r in rows if r["name"] == "ddpm"}
    gan4 = next((r for r in rows if r["name"] == "ddgan-4"), None)
    if gan4 is None or 100 not in ddpm or 4 not in ddpm:
        return []
    ref, fast = ddpm[100], ddpm[4]
    out = [(f"DDGAN at 4 steps: FD {gan4['fd']:.3f}, {gan4['fd'] / ref['fd']:.2f}x the DDPM model's best at 100 NFE "
            f"({ref['label']}, {ref['fd']:.3f}); goal 1.5x", gan4["fd"] <= 1.5 * ref["fd"]),
           (f"DDGAN at 4 steps: FD {gan4['fd']:.3f} against the DDPM model's best at 4 NFE ({fast['label']}, "
            f"{fast['fd']:.3f}): {fast['fd'] / gan4['fd']:.2f}x better; goal 3x", 3 * gan4["fd"] <= fast["fd"]),
           (f"DDGAN at 4 steps: recall {gan4['recall']:.3f}, {gan4['recall'] / ref['recall']:.2f}x the DDPM model's "
            f"at 100 NFE ({ref['recall']:.3f}); goal 0.9x", gan4["recall"] >= 0.9 * ref["recall"])]
    return out


def _plot(rows: list) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in ((axes[0], "fd", "Frechet distance (lower is better)"),
                           (axes[1], "recall", "recall (mode coverage, higher is better)")):
        ddpm = sorted((r for r in rows if r["name"] == "ddpm"), key=lambda r: r["nfe"])
        ax.plot([r["nfe"] for r in ddpm], [r[key] for r in ddpm], "o-", label="DDPM demo model (best sampler)")
        gans = sorted((r for r in rows if r["name"].startswith("ddgan")), key=lambda r: r["nfe"])
        if gans:
            ax.plot([r["nfe"] for r in gans], [r[key] for r in gans], "s-", label="DDGAN (T = 2, 4, 8)")
        for r, marker in ((next((r for r in rows if r["name"] == "gan"), None), "^"),
                          (next((r for r in rows if r["name"] == "ebm"), None), "D")):
            if r is not None:
                ax.plot([r["nfe"]], [r[key]], marker, label=r["method"].split(" (")[0].split(",")[0])
        ax.set_xscale("log")
        ax.set_yscale("log" if key == "fd" else "linear")
        ax.set_xlabel("network evaluations per image")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    save_figure(fig, FIGURES / "trilemma.png")


if __name__ == "__main__":
    sys.exit(main())
