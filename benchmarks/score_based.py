"""Score-based models on MNIST-5k (issue 12): one network and one training budget, three models, DDPM (L_simple on
the discrete VP process, ancestral sampling), NCSN (denoising score matching over a 10-rung noise ladder, annealed
Langevin dynamics; Song & Ermon 2019) and a VE-SDE model (denoising score matching over t ~ U[t_eps, 1], sampled by
predictor-corrector; Song et al. 2021), each sampled at about 200 network evaluations, with the Frechet distance of
the reference classifier's features. The VE model is also sampled by its predictor alone at the same NFE, and by the
Euler-Maruyama predictor with and without the corrector: does the Langevin corrector pay for its evaluations?

Verdict (exit 1 when missed): at equal NFE, PC beats its predictor alone (Song et al. 2021, Table 1's equal-compute
comparison), for reverse diffusion and for Euler-Maruyama, by more than two paired-bootstrap standard errors of the
Frechet distance's difference (both start from the same prior noise).

Trains the models into runs/sb_* first (the demo configuration, changing only the process, objective and sampling),
then writes benchmarks/results/score_based.json and sample grids docs/figures/{ncsn,ve_pc}_samples.png.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, demo_config, display_path, paired_fd_difference, train_once, verdict, write_result  # noqa: E402,E501

from denoisekit.data import load_dataset  # noqa: E402
from denoisekit.eval import Evaluator  # noqa: E402
from denoisekit.images import save_picture  # noqa: E402
from denoisekit.samplers import generate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# NCSN's ladder (Song & Ermon 2019: sigma 1 .. 0.01, L = 10, eps = 2e-5 for data in [0, 1]) for data in [-1, 1]:
# every sigma doubled and eps scaled by 4, so each step alpha_i / sigma_i^2 is the paper's.
NCSN_LADDER = {"kind": "ncsn", "sigma_min": 0.02, "sigma_max": 2.0, "levels": 10}
ALD = {"eps": 8e-5, "n_steps": 100}
ALD_200 = {"eps": 2e-4, "n_steps": 20}  # the best of eps 8e-5, 2e-4, 4e-4 at 20 steps a level (128 samples)
MODELS = {  # name: (objective, process section, the sampling section its training ends with)
    "ddpm": ("simple", {"kind": "ddpm", "schedule": "linear", "T": 1000},
             {"sampler": "ddpm", "steps": 200, "options": {"variance": "beta_tilde"}}),
    "ncsn": ("dsm", NCSN_LADDER, {"sampler": "ald", "steps": 10, "options": ALD}),
    "ve": ("dsm", {"kind": "ve", "sigma_min": 0.01, "sigma_max": 50.0}, {"sampler": "pc", "steps": 100, "options": {}}),
}
# (model, label, sampler, steps, options): about 200 network evaluations each, and NCSN's own 1000
SAMPLINGS = [
    ("ddpm", "ancestral (beta-tilde)", "ddpm", 200, {"variance": "beta_tilde"}),
    ("ncsn", "annealed Langevin 10 x 20 + denoise", "ald", 10, ALD_200),
    ("ncsn", "annealed Langevin 10 x 100 + denoise (the paper's)", "ald", 10, ALD),
    ("ve", "PC: reverse diffusion + Langevin (snr 0.16)", "pc", 100, {}),
    ("ve", "reverse diffusion alone", "pc", 200, {"corrector": "none"}),
    ("ve", "PC: Euler-Maruyama + Langevin (snr 0.16)", "pc", 100, {"predictor": "euler_maruyama"}),
    ("ve", "Euler-Maruyama alone", "em", 200, {}),
]


# (PC sampling, the same predictor alone at the same NFE): the pairs the verdict judges
PAIRS = [("PC: reverse diffusion + Langevin (snr 0.16)", "reverse diffusion alone"),
         ("PC: Euler-Maruyama + Langevin (snr 0.16)", "Euler-Maruyama alone")]


def claims(pairs: list) -> list:
    """Each PC sampling's FD below its predictor alone's by more than two standard errors of the difference."""
    if not pairs:
        raise ValueError("no PC / predictor pair was sampled in this run (rows reused from an earlier one?)")
    return [(f"{p['pc']} beats {p['alone']} at equal NFE: FD difference {p['difference']:+.3f} +- {p['se']:.3f}",
             p["difference"] < -2 * p["se"]) for p in pairs]


def model(name: str, steps: int, runs: Path):
    """The trained model `name` (trained first if its run folder has no checkpoint) and the training seconds."""
    objective, process, sampling = MODELS[name]
    cfg = demo_config({"objective": objective, "train": {"steps": steps, "progress": True}, "sample": sampling})
    cfg["process"], cfg["loss"] = process, {}  # replaced whole: the demo's keys are DDPM's and L_simple's
    return train_once(runs / f"sb_{name}", cfg, name)

def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2000, help="training steps of each model (the demo's budget)")
    p.add_argument("--n-fd", type=int, default=256, help="samples for each Frechet distance")
    p.add_argument("--runs", type=Path, default=ROOT / "runs", help="where the models are trained (or found)")
    p.add_argument("--name", default="score_based", help="the results file's name (a smoke run writes elsewhere)")
    p.add_argument("--figures", type=Path, default=ROOT / "docs" / "figures")
    p.add_argument("--reuse", action="store_true", help="keep the rows of the existing NAME.json whose model and "
                   "sampling are unchanged (same models, seeds and evaluator), and run only the new ones")
    args = p.parse_args()
    ds = load_dataset("mnist")
    evaluator = Evaluator(ds)
    models = {name: model(name, args.steps, args.runs) for name in MODELS}
    previous = json.loads((RESULTS / f"{args.name}.json").read_text()) if args.reuse else {"rows": []}
    rows, drawn = [], {}
    for name, label, sampler, steps, options in SAMPLINGS:
        denoiser, config, train_s = models[name]
        if train_s is None:  # trained by an earlier run of this script: its recorded time
            train_s = previous.get("settings", {}).get("train_seconds", {}).get(name)
            models[name] = denoiser, config, train_s
        same = [r for r in previous["rows"] if (r["model"], r["sampler"], r["steps"], r["options"]) ==
                (name, sampler, steps, options)]
        if same:
            rows.append({**same[0], "sampling": label, "train_seconds": train_s})
            print(f"{name} {label}: reused from the previous results", flush=True)
            continue
        stats: dict = {}
        t0 = time.perf_counter()
        x = generate(denoiser, args.n_fd, tuple(config["data"]["shape"]), seed=0, steps=steps, sampler=sampler,
                     progress=True, stats=stats, **options)
        seconds = time.perf_counter() - t0
        m = evaluator.evaluate(x.cpu())
        drawn[label] = x.cpu()
        row = {"model": name, "objective": MODELS[name][0], "process": MODELS[name][1]["kind"], "sampling": label,
               "sampler": sampler, "steps": steps, "options": options, "nfe": stats.get("nfe"),
               "fd": m["fd"], "precision": m["precision"], "recall": m["recall"], "sample_seconds": seconds,
               "train_seconds": train_s}
        rows.append(row)
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
        if (name, options) in (("ncsn", ALD), ("ve", {})):
            grid = save_picture(x[:64].cpu(), args.figures / f"{'ncsn' if name == 'ncsn' else 've_pc'}_samples.png",
                                nrow=8, scale=2)
            row["figure"] = display_path(grid)
    print(f"\n{'model':6} {'sampling':46} {'NFE':>5} {'FD':>8} {'prec':>5} {'rec':>5}")
    for r in rows:
        print(f"{r['model']:6} {r['sampling']:46} {r['nfe']:5d} {r['fd']:8.3f} {r['precision']:5.2f} "
              f"{r['recall']:5.2f}")
    pairs = []
    for pc, alone in PAIRS:
        if pc in drawn and alone in drawn:
            difference, se = paired_fd_difference(evaluator, drawn[pc], drawn[alone])
            pairs.append({"pc": pc, "alone": alone, "difference": difference, "se": se})
    path = write_result(args.name, {
        "data": "mnist (MNIST-5k)",
        "settings": {"train_steps": args.steps, "n_fd": args.n_fd, "network": "the demo U-Net (configs/demo.yaml)",
                     "ncsn_ladder": NCSN_LADDER, "ald": ALD, "ald_200": ALD_200,
                     "train_seconds": {name: models[name][2] for name in MODELS}},
        "rows": rows, "pc_vs_alone": pairs})
    print(f"results: {display_path(path)}")
    return verdict(claims(pairs))


if __name__ == "__main__":
    sys.exit(main())
