"""Few-step generation on MNIST-5k: progressive distillation, consistency distillation and consistency training
against their teacher (the demo model) at the same number of network evaluations.

Every row is the Frechet distance of `--n` samples in the library's classifier features (`denoisekit eval`'s metric),
averaged over `--seeds` (at n = 1000 one seed's FD moves by about 10% from seed to seed, as much as the goals' margins).
A consistency model's intermediate levels for 2 and 4 steps are tuned greedily on a held-out seed (`--tune-seed`), as
Song et al. 2023 tune theirs: the 2-step level first, then each next one below the last; the default trailing levels
are kept in the result for comparison. The teacher is scored at 1, 2, 4, 20 and 50 NFE with its best deterministic and its best stochastic sampler among a
few candidates at each NFE. The students: progressive distillation in stages from a 64-step DDIM teacher down to 1
step (`denoisekit distill --method progressive`, each stage a run folder), consistency distillation (`--method
consistency`), both started from the teacher, and consistency training from scratch (`denoisekit train --objective
consistency`) with the demo's network and step budget. Training cost is CPU time of this process (all its threads),
in minutes. Verdicts: the issue's goals (progressive 4-step within 1.25x and 2-step within 1.6x of the teacher's best
20-NFE deterministic distance; consistency distillation 2-step within 1.5x and 1-step within 3x). Writes
benchmarks/results/few_step.json, docs/figures/few_step_grid.png and docs/figures/few_step_fd.png.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import demo_config, display_path, save_figure, seed_list, verdict, write_result  # noqa: E402

import torch  # noqa: E402

from denoisekit.data import load_dataset  # noqa: E402
from denoisekit.eval import Evaluator  # noqa: E402
from denoisekit.images import save_picture  # noqa: E402
from denoisekit.models import load_denoiser  # noqa: E402
from denoisekit.samplers import generate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "figures"
TEACHER_NFE = (1, 2, 4, 20, 50)
STUDENT_STEPS = (1, 2, 4)
DETERMINISTIC = (("ddim", "trailing", {}), ("dpmpp_2m", None, {}), ("unipc", None, {}))
STOCHASTIC = (("ddpm", None, {}), ("dpmpp_2m_sde", None, {}))
LEVEL_CANDIDATES = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0)
GOALS = (("progressive", 4, 1.25), ("progressive", 2, 1.6), ("consistency distillation", 2, 1.5),
         ("consistency distillation", 1, 3.0))


def timed(folder: Path, fn):
    """(fn(), CPU seconds of this process, wall seconds) for work that fills `folder`; measured when the folder is new
    and kept in its cost.json, read back from there when the work was done by an earlier run."""
    import json
    record = Path(folder) / "cost.json"
    fresh = not Path(folder).exists()
    c, w = time.process_time(), time.perf_counter()
    out = fn()
    cpu, wall = time.process_time() - c, time.perf_counter() - w
    if fresh:
        record.write_text(json.dumps({"cpu_s": cpu, "wall_s": wall}))
    elif record.exists():
        cpu, wall = (json.loads(record.read_text())[k] for k in ("cpu_s", "wall_s"))
    else:
        cpu = wall = float("nan")
    return out, cpu, wall


def claims(rows: list) -> list:
    """The issue's goals against the teacher's best deterministic distance at 20 NFE."""
    teacher = [r for r in rows if r["method"] == "teacher" and r["nfe"] == 20 and not r["stochastic"]]
    if not teacher:
        raise ValueError("the teacher's deterministic samplers at 20 NFE must be scored")
    ref = min(teacher, key=lambda r: r["fd"])
    out = []
    for method, steps, ratio in GOALS:
        row = next((r for r in rows if r["method"] == method and r["nfe"] == steps), None)
        if row is None:
            continue
        out.append((f"{method} at {steps} step(s): FD {row['fd']:.3f}, {row['fd'] / ref['fd']:.2f}x the teacher's best "
                    f"20-NFE deterministic ({ref['label']}, FD {ref['fd']:.3f}); goal {ratio}x",
                    row["fd"] <= ratio * ref["fd"]))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default=str(ROOT / "runs" / "ablation" / "demo"), help="the demo run (trained "
                   "there first when missing)")
    p.add_argument("--work", default=str(ROOT / "runs" / "few_step"), help="where the students' runs go")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--seeds", type=seed_list, default="0,1,2", help="comma-separated sampling seeds to average "
                   "(default 0,1,2)")
    p.add_argument("--tune-seed", type=int, default=100, dest="tune_seed", help="the seed the consistency models' "
                   "intermediate levels are tuned on (not one of --seeds)")
    p.add_argument("--stage-steps", type=int, default=400, dest="stage_steps")
    p.add_argument("--cd-steps", type=int, default=1600, dest="cd_steps")
    p.add_argument("--ct-steps", type=int, default=2000, dest="ct_steps")
    p.add_argument("--lr", type=float, default=2e-4)
    args = p.parse_args()
    if args.tune_seed in args.seeds:
        p.error("--tune-seed: expected a seed not in --seeds (the levels are tuned on held-out samples)")
    for flag in ("n", "stage_steps", "cd_steps", "ct_steps"):
        if getattr(args, flag) < 2:
            p.error(f"--{flag.replace('_', '-')}: expected at least 2")
    from denoisekit.recipes import RunConfig, train_run
    from denoisekit.recipes.distill import DistillConfig, distill, prepare_distillation
    teacher_run, work = Path(args.teacher), Path(args.work)
    costs = {}
    if not (teacher_run / "checkpoints").exists():
        _, cpu, wall = timed(teacher_run, lambda: train_run(RunConfig.from_dict(demo_config({"train": {"progress":
                                                                                              False}})), teacher_run))
        costs["teacher"] = {"cpu_min": cpu / 60, "wall_min": wall / 60}
    teacher, config = load_denoiser(teacher_run)
    evaluator = Evaluator(load_dataset(config["run"]["data"]), progress=False)
    shape = tuple(config["data"]["shape"])
    rows, grids, tuned, untuned = [], {}, {}, []

    def fd(model, seed, stats=None, **kw):
        x = generate(model, args.n, shape, seed=seed, stats=stats, **kw)
        return evaluator.evaluate(x.cpu())["fd"], x[:16].cpu()

    def score(method, label, model, sampler, steps, schedule, options, stochastic, keep=True):
        stats: dict = {}
        runs = [fd(model, seed, stats, steps=steps, sampler=sampler, schedule=schedule, **options)
                for seed in args.seeds]
        row = {"method": method, "label": label, "sampler": sampler, "steps": steps, "schedule": schedule,
               "options": options, "stochastic": stochastic, "nfe": stats["nfe"],
               "fd": sum(v for v, _ in runs) / len(runs), "fd_seeds": [v for v, _ in runs]}
        if keep:
            rows.append(row)
            grids[(method, row["nfe"])] = runs[0][1]
        print(f"{method:26s} {label:44s} NFE {row['nfe']:3d}  FD {row['fd']:.3f} "
              f"({', '.join(f'{v:.3f}' for v, _ in runs)})", flush=True)
        return row

    def consistency_rows(method, model):
        """1, 2 and 4 steps of a consistency model: its levels tuned on the held-out seed; trailing kept aside."""
        levels = tune_levels(lambda lv: fd(model, args.tune_seed, steps=len(lv) + 1, sampler="consistency",
                                           levels=lv)[0], model.process, max(STUDENT_STEPS) - 1)
        tuned[method] = levels
        for steps in STUDENT_STEPS:
            options = {"levels": levels[:steps - 1]} if steps > 1 else {}
            score(method, "consistency sampling" + (f", levels {', '.join(f'{v:g}' for v in levels[:steps - 1])}"
                                                    if steps > 1 else ""), model, "consistency", steps, None,
                  options, steps > 1)
            if steps > 1:
                untuned.append(score(method, "consistency sampling, trailing", model, "consistency", steps, None, {},
                                     True, keep=False))

    for nfe in TEACHER_NFE:
        for stochastic, candidates in ((False, DETERMINISTIC), (True, STOCHASTIC)):
            for sampler, schedule, options in candidates:
                if nfe == 1 and sampler != "ddim" and not stochastic:
                    continue  # one step of a multistep solver is DDIM's step
                score("teacher", f"{sampler}{', ' + schedule if schedule else ''}", teacher, sampler, nfe, schedule,
                      options, stochastic)
    teacher_rows = list(rows)
    rows[:] = [min((r for r in teacher_rows if r["nfe"] == nfe and r["stochastic"] == s), key=lambda r: r["fd"])
               for nfe in TEACHER_NFE for s in (False, True)]  # the best of each kind at each NFE

    def run_distill(method, out, **cfg):
        dc = DistillConfig.from_dict({"method": method, "train": {"lr": args.lr, "progress": False, **cfg.pop("train")},
                                      **cfg})
        prep = prepare_distillation(dc, teacher_run, out)
        last, cpu, wall = timed(out, lambda: distill(prep))
        return prep, cpu, wall

    pd_prep, cpu, wall = run_distill("progressive", work / "progressive", stages=[32, 16, 8, 4, 2, 1],
                                     train={"steps": args.stage_steps})
    costs["progressive"] = {"cpu_min": cpu / 60, "wall_min": wall / 60, "stages": len(pd_prep.stages),
                            "steps_per_stage": args.stage_steps}
    for stage in pd_prep.stages:
        if stage.steps in STUDENT_STEPS:
            student, _ = load_denoiser(stage.folder)
            score("progressive", f"stage {stage.index}, ddim trailing", student, "ddim", stage.steps, "trailing", {},
                  False)
    cd_prep, cpu, wall = run_distill("consistency", work / "consistency", train={"steps": args.cd_steps})
    costs["consistency distillation"] = {"cpu_min": cpu / 60, "wall_min": wall / 60, "steps": args.cd_steps}
    student, _ = load_denoiser(cd_prep.stages[-1].folder)
    consistency_rows("consistency distillation", student)
    ct_run = work / "consistency_training"
    ct_cfg = demo_config({"objective": "consistency", "train": {"steps": args.ct_steps, "progress": False,
                                                                "ema_profiles": [], "lr": 1e-3},
                          "sample": {"sampler": "consistency", "steps": 2}})
    ct_cfg.pop("loss", None)
    _, cpu, wall = timed(ct_run, lambda: train_run(RunConfig.from_dict(ct_cfg), ct_run))
    costs["consistency training"] = {"cpu_min": cpu / 60, "wall_min": wall / 60, "steps": args.ct_steps}
    student, _ = load_denoiser(ct_run)
    consistency_rows("consistency training", student)

    FIGURES.mkdir(parents=True, exist_ok=True)
    order = [("teacher", n) for n in TEACHER_NFE] + [(m, s) for m in ("progressive", "consistency distillation",
                                                                      "consistency training") for s in STUDENT_STEPS]
    best = {}
    for r in rows:  # the grid shows each method's best row at each NFE
        key = (r["method"], r["nfe"])
        if key not in best or r["fd"] < best[key]["fd"]:
            best[key] = r
    picture = torch.cat([_row_of(rows, grids, key, best) for key in order if key in best])
    save_picture(picture, FIGURES / "few_step_grid.png", nrow=16, scale=1)
    _plot(rows)
    result = {"teacher": display_path(teacher_run), "n": args.n, "seeds": list(args.seeds),
              "tune_seed": args.tune_seed, "tuned_levels": tuned, "rows": rows, "consistency_untuned": untuned,
              "teacher_candidates": teacher_rows, "costs": costs, "lr": args.lr, "evaluator": evaluator.info}
    print(f"results: {write_result('few_step', result)}")
    for k, v in costs.items():
        print(f"cost {k:26s} {v['cpu_min']:.1f} CPU-min, {v['wall_min']:.1f} min wall")
    return verdict(claims(rows))


def tune_levels(score, process, count: int, candidates=LEVEL_CANDIDATES) -> list:
    """Song et al. 2023's greedy search: the level of the 2-step sampler's second evaluation minimising `score(levels)`
    among `candidates`, then the 3-step sampler's third below it with the first kept, and so on: `count` levels."""
    levels: list = []
    for _ in range(count):
        left = count - len(levels) - 1  # levels still to place below this one
        below = [c for c in candidates if (not levels or c < levels[-1]) and sum(d < c for d in candidates) >= left]
        levels.append(min(below, key=lambda c: score([*levels, c])))
    return levels


def _row_of(rows, grids, key, best):
    """The 16 pictures of the best row of (method, nfe)."""
    r = best[key]
    x = grids.get((r["method"], r["nfe"]))
    return x


def _plot(rows: list) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for method, style in (("teacher", "k-"), ("progressive", "o-"), ("consistency distillation", "s-"),
                          ("consistency training", "^-")):
        pts = sorted((r["nfe"], r["fd"]) for r in rows if r["method"] == method)
        if method == "teacher":
            for stochastic, st in ((False, "k-"), (True, "k--")):
                p = sorted((r["nfe"], r["fd"]) for r in rows if r["method"] == method and r["stochastic"] == stochastic)
                ax.plot(*zip(*p), st, label=f"teacher, best {'stochastic' if stochastic else 'deterministic'}")
            continue
        best = {}
        for nfe, fd in pts:
            best[nfe] = min(fd, best.get(nfe, fd))
        ax.plot(list(best), list(best.values()), style, label=method)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("network evaluations (NFE)")
    ax.set_ylabel("Frechet distance (classifier features)")
    ax.set_title("MNIST-5k: few-step students against their teacher")
    ax.legend(fontsize=8)
    save_figure(fig, FIGURES / "few_step_fd.png")


if __name__ == "__main__":
    sys.exit(main())
