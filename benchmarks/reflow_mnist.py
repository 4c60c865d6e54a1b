"""Reflow on MNIST-5k (Liu et al. 2023, sec. 2.3): does a reflowed flow give good 1-2 step samples?

The teacher is the flow-matching model of benchmarks/processes_mnist.py (the demo's U-Net on the straight path,
logit-normal times, trained for the demo's minutes; trained here first if `--teacher` has no checkpoint). `denoisekit
reflow` draws `--pairs` couplings (z, x) with its deterministic ODE (dpmpp_2m, 20 steps) and trains a copy of it on them
for `--steps` steps (lr 2e-4, cosine; the distillation stage's other defaults). Teacher and student are sampled with
Euler steps over the whole path (trailing times) at 1, 2 and 4 NFE, and the teacher with its best sampler at 20 NFE;
scores are the Frechet distance, precision and recall in the library's classifier features of `--n` samples, seed 0;
the straightness S (Liu et al. 2023, Def. 2.4, 50 Euler steps) of both flows on 256 fresh draws. Claims, said either
way: reflow lowers S; the student beats the teacher at 1 and at 2 NFE; and its 2-step FD is within 2x of the
teacher's 20-NFE FD ("good 1-2 step samples"). Writes benchmarks/results/reflow_mnist.json and
docs/figures/reflow_mnist.png (teacher and student at 1, 2 and 4 steps). Run it alone.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import display_path, verdict, write_result  # noqa: E402

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "figures"
FEW = (1, 2, 4)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default=str(ROOT / "runs" / "processes_mnist" / "flow"), help="a flow-matching run")
    p.add_argument("--work", default=str(ROOT / "runs" / "reflow_mnist"), help="the reflow's folder")
    p.add_argument("--pairs", type=int, default=5000)
    p.add_argument("--steps", type=int, default=2000, help="the student's training steps")
    p.add_argument("--n", type=int, default=1000, help="samples per score")
    args = p.parse_args()
    if args.pairs < 32:
        p.error(f"--pairs: expected at least one batch (32), got {args.pairs}")
    if args.steps < 1:
        p.error(f"--steps: expected a positive number of steps, got {args.steps}")
    if args.n < 10:
        p.error(f"--n: expected at least 10 samples, got {args.n}")

    from denoisekit.data import load_dataset
    from denoisekit.eval import Evaluator
    from denoisekit.images import save_picture
    from denoisekit.models import load_model
    from denoisekit.recipes import RunConfig, train_run
    from denoisekit.recipes.distill import DistillConfig, distill, prepare_distillation
    from denoisekit.samplers import generate, straightness
    from denoisekit.utils import sample_generators
    teacher_run, work = Path(args.teacher), Path(args.work)
    if not (teacher_run / "checkpoints").exists():
        import processes_mnist
        print(f"no flow model at {display_path(teacher_run)}: training the flow row of processes_mnist there")
        train_run(RunConfig.from_dict(processes_mnist.row_configs()["flow"]), teacher_run, resume=False)
    dc = DistillConfig.from_dict({"method": "reflow", "pairs": {"n": args.pairs, "sampler": "dpmpp_2m", "steps": 20},
                                  "train": {"steps": args.steps, "lr": 2e-4, "progress": False,
                                            "checkpoint_every": 500}})
    t0 = time.perf_counter()
    student_run = distill(prepare_distillation(dc, teacher_run, work))
    reflow_min = (time.perf_counter() - t0) / 60
    models = {"teacher": load_model(teacher_run), "reflow": load_model(student_run)}
    evaluator = Evaluator(load_dataset("mnist"), progress=False)
    rows, grids = [], []
    plans = [(name, "euler", "trailing", k) for name in models for k in FEW] + \
        [("teacher", "dpmpp_2m", None, 20), ("teacher", "unipc", None, 20)]
    for name, sampler, schedule, steps in plans:
        model = models[name]
        stats: dict = {}
        with torch.no_grad():
            x = generate(model.denoiser, args.n, model.shape, seed=0, steps=steps, sampler=sampler,
                         schedule=schedule, stats=stats)
        m = evaluator.evaluate(x.cpu().clamp(-1, 1))
        rows.append({"name": name, "sampler": sampler, "schedule": schedule, "steps": steps, "nfe": stats["nfe"],
                     "fd": m["fd"], "precision": m["precision"], "recall": m["recall"]})
        if steps in FEW:
            grids.append(x[:10].cpu())
        print(f"{name:8s} {sampler:9s} NFE {stats['nfe']:3d}  FD {m['fd']:.3f}  precision {m['precision']:.3f}  "
              f"recall {m['recall']:.3f}", flush=True)
    z = models["teacher"].denoiser.process.prior_sample((256, *models["teacher"].shape), sample_generators(99, 256))
    straight = {}
    for name, model in models.items():
        with torch.no_grad():
            straight[name] = straightness(model.denoiser, z, steps=50)[0]
        print(f"straightness S of the {name}: {straight[name]:.5f}")
    write_result("reflow_mnist", {"n": args.n, "seed": 0, "pairs": args.pairs, "steps": args.steps,
                                  "reflow_min": reflow_min, "teacher": display_path(teacher_run), "rows": rows,
                                  "straightness": straight, "evaluator": evaluator.info})
    save_picture(torch.cat(grids), FIGURES / "reflow_mnist.png", nrow=10, scale=2)
    print("picture rows, top to bottom: teacher at 1, 2, 4 Euler steps; reflow at 1, 2, 4")
    return verdict(claims(rows, straight))


def claims(rows: list, straight: dict) -> list:
    def fd(name, steps, sampler="euler"):
        return next((r["fd"] for r in rows if r["name"] == name and r["steps"] == steps and r["sampler"] == sampler),
                    None)
    out = []
    if {"teacher", "reflow"} <= set(straight):
        out.append((f"reflow lowers the straightness S: {straight['reflow']:.5f} against the teacher's "
                    f"{straight['teacher']:.5f}", straight["reflow"] < straight["teacher"]))
    for k in (1, 2):
        s, t = fd("reflow", k), fd("teacher", k)
        if s is not None and t is not None:
            out.append((f"at {k} Euler step(s) the reflowed flow's FD {s:.3f} beats the teacher's {t:.3f}", s < t))
    best20 = min((r for r in rows if r["name"] == "teacher" and r["steps"] == 20), key=lambda r: r["fd"], default=None)
    s2 = fd("reflow", 2)
    if best20 is not None and s2 is not None:
        out.append((f"good 2-step samples: the reflowed flow's FD {s2:.3f} at 2 NFE is {s2 / best20['fd']:.2f}x the "
                    f"teacher's {best20['fd']:.3f} at 20 ({best20['sampler']}); goal 2x", s2 <= 2 * best20["fd"]))
    return out


if __name__ == "__main__":
    sys.exit(main())
