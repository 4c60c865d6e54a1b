"""Does the Langevin corrector pay for its network evaluations? Predictor-corrector sampling against the predictor
alone at equal NFE (Song et al. 2021, sec. 4.2 and Table 1), with the exact score of a Gaussian mixture, so the only
errors are the samplers'.

For each process (VE, VP) and budget (NFE), the reverse-diffusion predictor alone takes NFE steps; PC takes NFE/2
steps, each with one Langevin corrector step at a target signal-to-noise ratio (snr 0.05 .. 0.25). Metrics against
the mixture itself: sliced Wasserstein-2 distance to fresh mixture draws (with its floor, two independent draws of
the same size), and the total-variation error of the component weights (each sample assigned to its most probable
component). The snr is chosen on selection seeds; the chosen PC and the predictor alone are then scored on other
seeds, paired (the same prior noise for both), and a difference is called only beyond two standard errors of the
paired mean. Verdict (exit 1 when missed): at the largest budget PC beats the predictor alone for each process, the
equal-compute comparison of Song et al. (2021, Table 1). Writes benchmarks/results/pc_corrector.json.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import mean_se, verdict, write_result  # noqa: E402

from denoisekit import GaussianMixture, sample  # noqa: E402
from denoisekit.processes import VESDE, VPSDE  # noqa: E402
from denoisekit.eval.lowdim import sliced_wasserstein  # noqa: E402

PROCESSES = {"ve": VESDE(sigma_min=0.01, sigma_max=20.0), "vp": VPSDE()}


def weight_error(gmm: GaussianMixture, x: torch.Tensor) -> float:
    """Total variation between the mixture's weights and the share of samples whose most probable component is k."""
    k = gmm.log_class_posterior(x.double(), 1.0, 0.0).argmax(1)
    share = torch.bincount(k, minlength=len(gmm.w)).double() / len(x)
    return float(0.5 * (share - gmm.w).abs().sum())


def run(gmm, process, ref, n: int, steps: int, options: dict, seeds: list) -> tuple[list, list, int]:
    """Sliced W2 and weight error per seed (prior noise from seed, sampler noise from 1000 + seed), and the NFE."""
    den, swd, werr, used = gmm.denoiser(process), [], [], None
    for seed in seeds:
        x_T = process.prior_sample((n, gmm.dim), torch.Generator().manual_seed(seed), dtype=torch.float64)
        stats: dict = {}
        x = sample(den, x_T, "pc", steps, generator=torch.Generator().manual_seed(1000 + seed), stats=stats, **options)
        swd.append(sliced_wasserstein(x, ref))
        werr.append(weight_error(gmm, x))
        used = stats["nfe"]
    return swd, werr, used


def paired_call(pc: list, alone: list) -> dict:
    """The paired difference PC - alone over the scoring seeds, its standard error, and the call beyond 2 SE."""
    mean, se = mean_se([a - b for a, b in zip(pc, alone)])
    call = "better" if mean < -2 * se else "worse" if mean > 2 * se else "within noise"
    return {"difference": mean, "se": se, "call": call}


def claims(verdicts: list) -> list:
    """At each process's largest budget, PC better than the predictor alone beyond two standard errors."""
    out = []
    for pname in sorted({v["process"] for v in verdicts}):
        top = max((v for v in verdicts if v["process"] == pname), key=lambda v: v["nfe"])
        out.append((f"{pname} at NFE {top['nfe']}: {top['best_pc']} beats the predictor alone "
                    f"(SW2 {top['best_pc_swd']:.4f} vs {top['predictor_swd']:.4f}, difference "
                    f"{top['difference']:+.4f} +- {top['se']:.4f}: {top['call']})", top["call"] == "better"))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=4000, help="samples per configuration")
    p.add_argument("--dim", type=int, default=16)
    p.add_argument("--nfe", default="20,50,100,200")
    p.add_argument("--snrs", default="0.05,0.1,0.16,0.25")
    p.add_argument("--select-seeds", default="0,1", help="seeds on which each budget's snr is chosen")
    p.add_argument("--seeds", default="2,3,4,5,6", help="other seeds on which the choice is scored (at least 2)")
    args = p.parse_args()
    select, seeds = [int(s) for s in args.select_seeds.split(",")], [int(s) for s in args.seeds.split(",")]
    if len(seeds) < 2 or set(select) & set(seeds):
        p.error(f"--seeds: expected at least two seeds, none of them in --select-seeds, got {args.seeds!r}")
    gmm = GaussianMixture.random(dim=args.dim, k=8, seed=0)
    ref = gmm.sample(args.n, torch.Generator().manual_seed(100))[0]
    floor = sliced_wasserstein(gmm.sample(args.n, torch.Generator().manual_seed(101))[0], ref)
    rows, verdicts = [], []
    for pname, process in PROCESSES.items():
        for nfe in (int(v) for v in args.nfe.split(",")):
            configs = [(f"PC, snr {snr}", nfe // 2, {"snr": float(snr)}) for snr in args.snrs.split(",")]
            chosen, chosen_swd = None, math.inf
            for label, steps, options in configs:  # the selection, on its own seeds
                swd, werr, used = run(gmm, process, ref, args.n, steps, options, select)
                rows.append({"process": pname, "sampling": label, "steps": steps, "nfe": used, "stage": "selection",
                             "swd": sum(swd) / len(swd), "swd_seeds": swd, "weight_tv": sum(werr) / len(werr)})
                if rows[-1]["swd"] < chosen_swd:
                    chosen, chosen_swd = (label, steps, options), rows[-1]["swd"]
            scored = {}
            for label, steps, options in [("predictor alone", nfe, {"corrector": "none"}), chosen]:
                swd, werr, used = run(gmm, process, ref, args.n, steps, options, seeds)
                scored[label] = swd
                rows.append({"process": pname, "sampling": label, "steps": steps, "nfe": used, "stage": "scoring",
                             "swd": sum(swd) / len(swd), "swd_seeds": swd, "weight_tv": sum(werr) / len(werr)})
                print(f"{pname:3} NFE {used:4d} {label:18} SW2 {rows[-1]['swd']:.4f} (floor {floor:.4f})  "
                      f"weights TV {rows[-1]['weight_tv']:.4f}", flush=True)
            alone, pc = scored["predictor alone"], scored[chosen[0]]
            call = paired_call(pc, alone)
            verdicts.append({"process": pname, "nfe": used, "predictor_swd": sum(alone) / len(alone),
                             "best_pc": chosen[0], "best_pc_swd": sum(pc) / len(pc), **call,
                             "pc_better": call["call"] == "better"})
            print(f"{pname} NFE {used}: {chosen[0]} - predictor alone = {call['difference']:+.4f} "
                  f"+- {call['se']:.4f}: {call['call']}", flush=True)
    path = write_result("pc_corrector", {
        "settings": {"mixture": f"GaussianMixture.random(dim={args.dim}, k=8, seed=0), exact score", "n": args.n,
                     "select_seeds": select, "seeds": seeds, "predictor": "reverse diffusion",
                     "corrector": "Langevin, 1 step", "schedule": "uniform in t", "swd_floor": floor},
        "rows": rows, "verdicts": verdicts})
    print(f"results: {path}")
    return verdict(claims(verdicts))


if __name__ == "__main__":
    sys.exit(main())
