"""Does the Langevin corrector pay for its network evaluations? Predictor-corrector sampling against the predictor
alone at equal NFE (Song et al. 2021, sec. 4.2 and Table 1), with the exact score of a Gaussian mixture, so the only
errors are the samplers'.

For each process (VE, VP) and budget (NFE), the reverse-diffusion predictor alone takes NFE steps; PC takes NFE/2
steps, each with one Langevin corrector step at a target signal-to-noise ratio (snr 0.05 .. 0.25). Metrics against
the mixture itself: sliced Wasserstein-2 distance to fresh mixture draws (with its floor, two independent draws of
the same size), and the total-variation error of the component weights (each sample assigned to its most probable
component). Writes benchmarks/results/pc_corrector.json.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import write_result  # noqa: E402

from denoisekit import GaussianMixture, sample  # noqa: E402
from denoisekit.processes import VESDE, VPSDE  # noqa: E402
from denoisekit.eval.lowdim import sliced_wasserstein  # noqa: E402

PROCESSES = {"ve": VESDE(sigma_min=0.01, sigma_max=20.0), "vp": VPSDE()}


def weight_error(gmm: GaussianMixture, x: torch.Tensor) -> float:
    """Total variation between the mixture's weights and the share of samples whose most probable component is k."""
    k = gmm.log_class_posterior(x.double(), 1.0, 0.0).argmax(1)
    share = torch.bincount(k, minlength=len(gmm.w)).double() / len(x)
    return float(0.5 * (share - gmm.w).abs().sum())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=4000, help="samples per configuration")
    p.add_argument("--dim", type=int, default=16)
    p.add_argument("--nfe", default="20,50,100,200")
    p.add_argument("--snrs", default="0.05,0.1,0.16,0.25")
    p.add_argument("--seeds", default="0,1", help="sampler seeds (the mixture stays the same)")
    args = p.parse_args()
    gmm = GaussianMixture.random(dim=args.dim, k=8, seed=0)
    ref = gmm.sample(args.n, torch.Generator().manual_seed(100))[0]
    floor = sliced_wasserstein(gmm.sample(args.n, torch.Generator().manual_seed(101))[0], ref)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for pname, process in PROCESSES.items():
        den = gmm.denoiser(process)
        for nfe in (int(v) for v in args.nfe.split(",")):
            configs = [("predictor alone", nfe, {"corrector": "none"})]
            configs += [(f"PC, snr {snr}", nfe // 2, {"snr": float(snr)}) for snr in args.snrs.split(",")]
            for label, steps, options in configs:
                swd, werr, used = [], [], None
                for seed in seeds:
                    x_T = process.prior_sample((args.n, args.dim), torch.Generator().manual_seed(seed),
                                               dtype=torch.float64)
                    stats: dict = {}
                    x = sample(den, x_T, "pc", steps, generator=torch.Generator().manual_seed(1000 + seed),
                               stats=stats, **options)
                    swd.append(sliced_wasserstein(x, ref))
                    werr.append(weight_error(gmm, x))
                    used = stats["nfe"]
                row = {"process": pname, "sampling": label, "steps": steps, "nfe": used,
                       "swd": sum(swd) / len(swd), "swd_seeds": swd, "weight_tv": sum(werr) / len(werr)}
                rows.append(row)
                print(f"{pname:3} NFE {used:4d} {label:18} SW2 {row['swd']:.4f} (floor {floor:.4f})  "
                      f"weights TV {row['weight_tv']:.4f}", flush=True)
    best = {}
    for r in rows:
        key = (r["process"], r["nfe"], r["sampling"] == "predictor alone")
        if key not in best or r["swd"] < best[key]["swd"]:
            best[key] = r
    verdicts = []
    for (pname, nfe, alone), r in sorted(best.items()):
        if alone:
            pc = best[(pname, nfe, False)]
            verdicts.append({"process": pname, "nfe": nfe, "predictor_swd": r["swd"], "best_pc": pc["sampling"],
                             "best_pc_swd": pc["swd"], "pc_better": pc["swd"] < r["swd"]})
            print(f"{pname} NFE {nfe}: predictor alone {r['swd']:.4f}, best PC ({pc['sampling']}) {pc['swd']:.4f}")
    path = write_result("pc_corrector", {
        "settings": {"mixture": f"GaussianMixture.random(dim={args.dim}, k=8, seed=0), exact score", "n": args.n,
                     "seeds": seeds, "predictor": "reverse diffusion", "corrector": "Langevin, 1 step",
                     "schedule": "uniform in t", "swd_floor": floor},
        "rows": rows, "verdicts": verdicts})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
