"""Four forward processes on MNIST-5k at equal training minutes: Frechet distance against NFE (issue 24).

The demo (configs/demo.yaml: DDPM's discrete VP, v-prediction) is trained first; its training wall time is the budget
B. The same U-Net is then trained for B on the score SDE's VP (`--process vp`, v-prediction), on flow matching's
straight path (`--objective flow`: velocity eps - x0, logit-normal times) and on critically-damped Langevin diffusion
(`--objective hsm`: the state (x, v), hybrid score matching with the mixed score; the U-Net reads two channels), each
for the steps B buys at its own measured seconds a step (the median of timed steps of the real trainer, scaled by the
demo run's real over measured seconds a step); its actual training time is reported and judged (within 1.1x of B).
Each model is sampled with two samplers at 10, 20, 50 and 100 steps: the scalar ones with dpmpp_2m_sde and unipc, CLD
with SSCS and Euler-Maruyama; scores are the Frechet distance, precision and recall in the library's classifier
features (`denoisekit eval`'s metrics) of `--n` samples, seed 0. Claims, said either way: CLD (its better sampler)
beats the VP SDE at 10 and at 20 NFE (the paper's "fewer steps"), and SSCS beats EM on CLD at each NFE up to 50.
Writes benchmarks/results/processes_mnist.json and docs/figures/processes_mnist.png. Run it alone: it times training.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import EqualMinutes, demo_config, merged, save_figure, verdict, write_result  # noqa: E402

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "figures"
NFES = (10, 20, 50, 100)
SCALAR_SAMPLERS = (("dpmpp_2m_sde", None), ("unipc", None))
CLD_SAMPLERS = (("sscs", "uniform"), ("cld_em", "uniform"))
LABELS = {"ddpm": "DDPM (discrete VP, the demo)", "vp": "VP SDE", "flow": "flow matching", "cld": "CLD"}


def row_configs() -> dict:
    """name -> run config: the demo's, with only the process, prediction and loss changed."""
    base = demo_config({"train": {"progress": False, "ema_profiles": [], "sample_every": 0}})
    base.pop("sample", None)

    def replaced(**sections):
        cfg = dict(base)
        cfg.update(sections)
        return cfg
    return {"ddpm": base,
            "vp": replaced(process={"kind": "vp"}),
            "flow": replaced(objective="flow", prediction="flow", process={"kind": "flow"},
                             loss={"t_sampling": "logit_normal"}),
            "cld": replaced(objective="hsm", prediction="mixed", process={"kind": "cld"}, loss={})}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default=str(ROOT / "runs" / "processes_mnist"), help="where the runs go (a finished run "
                   "is scored again without training)")
    p.add_argument("--n", type=int, default=1000, help="samples per score")
    p.add_argument("--nfe", default=",".join(map(str, NFES)), help="comma-separated step counts")
    args = p.parse_args()
    if args.n < 10:
        p.error(f"--n: expected at least 10 samples, got {args.n}")
    try:
        nfes = sorted({int(v) for v in args.nfe.split(",")})
    except ValueError:
        p.error(f"--nfe: expected comma-separated integers, got {args.nfe!r}")
    if not nfes or nfes[0] < 2:
        p.error(f"--nfe: expected step counts of at least 2, got {args.nfe!r}")

    from denoisekit.data import load_dataset
    from denoisekit.eval import Evaluator
    from denoisekit.models import load_model
    from denoisekit.samplers import generate
    work = Path(args.work)
    configs = row_configs()
    trainer = EqualMinutes(work, configs, reference="ddpm")
    trained = {name: trainer.train(name) for name in configs}
    evaluator = Evaluator(load_dataset("mnist"), progress=False)
    rows = []
    for name in configs:
        model = load_model(work / name)
        for sampler, schedule in (CLD_SAMPLERS if name == "cld" else SCALAR_SAMPLERS):
            for steps in nfes:
                stats: dict = {}
                with torch.no_grad():
                    x = generate(model.denoiser, args.n, model.shape, seed=0, steps=steps, sampler=sampler,
                                 schedule=schedule, stats=stats)
                m = evaluator.evaluate(x.cpu().clamp(-1, 1))
                rows.append({"name": name, "sampler": sampler, "schedule": schedule, "steps": steps,
                             "nfe": stats["nfe"], "fd": m["fd"], "precision": m["precision"], "recall": m["recall"]})
                print(f"{LABELS[name]:28s} {sampler:13s} NFE {stats['nfe']:3d}  FD {m['fd']:.3f}  precision "
                      f"{m['precision']:.3f}  recall {m['recall']:.3f}", flush=True)
    write_result("processes_mnist", {"n": args.n, "seed": 0, "budget_min": trained["ddpm"]["train_min"],
                                     "trained": list(trained.values()), "rows": rows, "evaluator": evaluator.info})
    plot(rows, FIGURES / "processes_mnist.png")
    return verdict(claims(rows, list(trained.values())))


def best(rows: list, name: str, steps: int):
    """The row of model `name` with the lowest FD at this step count (over its samplers), or None."""
    candidates = [r for r in rows if r["name"] == name and r["steps"] == steps]
    return min(candidates, key=lambda r: r["fd"]) if candidates else None


def plot(rows: list, path: Path) -> None:
    """FD against NFE, the better sampler of each model at each step count; CLD's two samplers drawn apart."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, label in LABELS.items():
        steps = sorted({r["steps"] for r in rows if r["name"] == name})
        pts = [best(rows, name, s) for s in steps]
        ax.plot([r["nfe"] for r in pts], [r["fd"] for r in pts], "o-", label=f"{label} (best sampler)")
    for sampler, style in (("sscs", ":"), ("cld_em", "--")):
        pts = sorted((r for r in rows if r["sampler"] == sampler), key=lambda r: r["nfe"])
        ax.plot([r["nfe"] for r in pts], [r["fd"] for r in pts], style, color="gray", label=f"CLD, {sampler}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("network evaluations")
    ax.set_ylabel("Frechet distance (classifier features)")
    ax.set_title("MNIST-5k, equal training minutes")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def claims(rows: list, trained=None) -> list:
    """CLD against the VP SDE at 10 and 20 steps, SSCS against EM up to 50, and equal minutes."""
    out = []
    for steps in (10, 20):
        cld, vp = best(rows, "cld", steps), best(rows, "vp", steps)
        if cld and vp:
            out.append((f"CLD FD {cld['fd']:.3f} ({cld['sampler']}) against the VP SDE's {vp['fd']:.3f} "
                        f"({vp['sampler']}) at {steps} steps: CLD needs fewer steps", cld["fd"] < vp["fd"]))
    for steps in sorted({r["steps"] for r in rows if r["name"] == "cld" and r["steps"] <= 50}):
        sscs = next((r for r in rows if r["sampler"] == "sscs" and r["steps"] == steps), None)
        em = next((r for r in rows if r["sampler"] == "cld_em" and r["steps"] == steps), None)
        if sscs and em:
            out.append((f"SSCS FD {sscs['fd']:.3f} against EM's {em['fd']:.3f} on CLD at {steps} NFE",
                        sscs["fd"] < em["fd"]))
    out += EqualMinutes.claims(trained or [], "ddpm")
    return out


if __name__ == "__main__":
    sys.exit(main())
