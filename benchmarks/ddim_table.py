"""The DDIM paper's Table 1 on MNIST-5k: Frechet distance for S steps and eta (Song et al. 2021).

One trained model (configs/demo.yaml, trained into --run first if it is not there), sampled with DDIM on a uniform
(linear) sub-sequence of S steps for eta = 0, 0.2, 0.5, 1 and sigma-hat (DDPM with sigma^2 = beta on the
sub-sequence), every cell from the same seeds, scored by the evaluator `denoisekit eval` uses (Frechet distance in
the reference classifier's features). The paper's pattern: at few steps eta = 0 is best and sigma-hat worst; at
S = 1000 they meet.

A control runs the same grid with an exact denoiser (the Gaussian mixture fitted to the 8x8 digits, Frechet distance
in pixel space to draws of the mixture), where the sampler is the only source of error. On the demo model trained
for 7 CPU minutes the pattern reverses (eta = 1 best, eta = 0 worst) while the control shows it: the reversal is
the model's, whose denoising errors stochastic steps correct and deterministic DDIM carries along.

Verdict (exit 1 when missed), on the control, where the paper's pattern is a property of the sampler: at the fewest
steps eta = 0 is best and sigma-hat worst, and the rows close up as S grows (the spread between the best and the
worst eta, relative to the best, is at most half as large at the most steps as at the fewest).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import trained_model, verdict, write_result  # noqa: E402

from denoisekit.samplers import generate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ETAS = [0.0, 0.2, 0.5, 1.0, "sigma_hat"]


def markdown(table: dict, steps: list, etas: list, floor: float) -> str:
    head = "| eta \\ S | " + " | ".join(map(str, steps)) + " |\n|---|" + "---|" * len(steps) + "\n"
    rows = []
    for eta in etas:
        cells = []
        for s in steps:
            v = table.get(f"{eta}|{s}")
            best = v is not None and v == min(table[f"{e}|{s}"] for e in etas if f"{e}|{s}" in table)
            cells.append("-" if v is None else (f"**{v:.3f}**" if best else f"{v:.3f}"))
        name = "sigma-hat" if eta == "sigma_hat" else f"{eta:g}"
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return head + "\n".join(rows) + f"\n\n(two halves of the real data: {floor:.3f})"


def claims(control: dict) -> list:
    """The paper's pattern in the exact-denoiser table {"eta|S": FD}: eta = 0 best and sigma-hat worst at the fewest
    steps; the relative spread over eta at the most steps at most half that at the fewest."""
    steps = sorted({int(k.split("|")[1]) for k in control})
    if len(steps) < 2:
        raise ValueError("the control needs at least two step counts S to judge the pattern")
    row = {s: {k.split("|")[0]: v for k, v in control.items() if int(k.split("|")[1]) == s} for s in steps}
    few = row[steps[0]]
    spread = {s: (max(row[s].values()) - min(row[s].values())) / min(row[s].values()) for s in (steps[0], steps[-1])}
    return [(f"exact denoiser, S = {steps[0]}: eta = 0 best (FD {few['0.0']:.3f}) and sigma-hat worst "
             f"({few['sigma_hat']:.3f})", few["0.0"] == min(few.values()) and few["sigma_hat"] == max(few.values())),
            (f"exact denoiser: the rows close up, relative spread over eta {spread[steps[-1]]:.2f} at S = {steps[-1]} "
             f"against {spread[steps[0]]:.2f} at S = {steps[0]} (at most half)",
             spread[steps[-1]] <= 0.5 * spread[steps[0]])]


def control_table(steps_list: list, n: int = 2000) -> dict:
    """The same grid with an exact denoiser (the Gaussian mixture fitted to the 8x8 digits), scored by the Frechet
    distance in pixel space to 5,000 draws of the mixture: what DDIM does when the model makes no error."""
    from denoisekit import DiscreteVP, GaussianMixture, load_dataset
    from denoisekit.eval.frechet import frechet_distance, gaussian_stats
    ds = load_dataset("digits")
    gmm = GaussianMixture.fit_classes(ds.x, ds.y)
    oracle = gmm.denoiser(DiscreteVP("linear", 1000))
    mu_r, c_r = gaussian_stats(gmm.sample(5000, torch.Generator().manual_seed(0))[0].float())
    table = {}
    for steps in steps_list:
        for eta in ETAS:
            x = generate(oracle, n, (gmm.dim,), seed=1, steps=steps, sampler="ddim", schedule="uniform", eta=eta)
            table[f"{eta}|{steps}"] = frechet_distance(*gaussian_stats(x), mu_r, c_r)
            print(f"exact model: S = {steps:4d}  eta = {eta!s:9s}  FD {table[f'{eta}|{steps}']:.4f}", flush=True)
    return table


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default=str(ROOT / "runs" / "demo"))
    p.add_argument("--steps", default="10,20,50,100,1000")
    p.add_argument("--n", type=int, default=1000, help="samples per cell")
    p.add_argument("--n-long", type=int, default=500, help="samples per cell at S >= 500 (CPU time)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--control-only", action="store_true", help="only (re)compute the exact-model table and add it "
                   "to the last JSON")
    args = p.parse_args()
    steps_list = [int(v) for v in args.steps.split(",")]
    control = control_table([s for s in steps_list if s <= 100])
    control_md = markdown(control, [s for s in steps_list if s <= 100], ETAS, 0.0).rsplit("\n\n", 1)[0]
    if args.control_only:
        import json
        from common import RESULTS
        d = json.loads((RESULTS / "ddim_table.json").read_text())
        d.pop("machine", None)
        print(f"wrote {write_result('ddim_table', {**d, 'control': control, 'control_markdown': control_md})}")
        return verdict(claims(control))
    run = Path(args.run)
    denoiser, config, evaluator, shape = trained_model(run, args.device)
    steps_list = [int(v) for v in args.steps.split(",")]
    table, rows = {}, []
    for steps in steps_list:
        n = args.n if steps < 500 else args.n_long
        for eta in ETAS:
            t0 = time.perf_counter()
            x = generate(denoiser, n, shape, seed=0, steps=steps, sampler="ddim", schedule="uniform", eta=eta,
                         progress=False)
            fd = evaluator.evaluate(x.cpu())["fd"]
            table[f"{eta}|{steps}"] = fd
            rows.append({"eta": eta, "steps": steps, "n": n, "fd": fd, "seconds": time.perf_counter() - t0})
            print(f"S = {steps:5d}  eta = {eta!s:9s}  FD {fd:.4f}  ({n} samples, {time.perf_counter() - t0:.0f}s)",
                  flush=True)
    floor = evaluator.info["fd_data_halves"]
    md = markdown(table, steps_list, ETAS, floor)
    print("\n" + md)
    path = write_result("ddim_table", {"run": str(run), "rows": rows, "markdown": md, "net": config["run"]["net"],
                                       "evaluator": evaluator.info, "control": control,
                                       "control_markdown": control_md})
    print(f"wrote {path}")
    return verdict(claims(control))


if __name__ == "__main__":
    sys.exit(main())
