"""Sampler accuracy per network evaluation: ours and the anchors (diffusers, k-diffusion) side by side, one run.

The model is an analytic Gaussian mixture (its exact denoiser is closed-form) under DDPM's linear-beta process.
Ground truth: the probability-flow ODE from the same noise, solved by dopri5 to rtol = atol = 1e-10 from
s_max = sigma/alpha at t = 999 down to s_min at t = 0 (the smallest trained noise level), then the denoising step
x = D(x, s_min) that every sampler here ends with. Error = RMS distance to it / the data's RMS spread.

Each library's model call evaluates the exact denoiser at the noise level that library itself uses (diffusers'
sigmas interpolate fractional timesteps in log-sigma, ours in alpha-bar), so no library is charged for another's
interpolation. Anchors that stop at a non-zero noise level (diffusers' DEIS and PNDM) get the final denoising step
too, and its evaluation is counted. Every run's NFE is counted, not assumed; a configuration is scored at a budget
with as many steps as fit in it.

Mixtures: 'random' (d = 16, K = 8, the one the automatic schedule was developed on) and 'digits' (d = 64,
K = 10, one diagonal Gaussian per class fitted to scikit-learn's 8x8 digits), plus a held-out 'random2'
(d = 32, K = 12, another seed) that nothing was tuned on.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from common import save_figure, verdict, write_result  # noqa: E402

from anchors import k_model, load_k_sampling  # noqa: E402
from denoisekit import DiscreteVP, GaussianMixture, load_dataset, sample  # noqa: E402
from denoisekit.samplers import rk45_sample  # noqa: E402
from denoisekit.samplers.auto import auto_schedule  # noqa: E402
from denoisekit.samplers import sampling_times  # noqa: E402
from denoisekit.samplers.registry import DEFAULT_SCHEDULES  # noqa: E402

PROCESS = DiscreteVP("linear", 1000)
OURS = {  # name: (sampler, options)
    "ddim": ("ddim", {}), "euler": ("euler", {}), "heun": ("heun", {}), "dpmpp_2s": ("dpmpp_2s", {}),
    "dpmpp_2m": ("dpmpp_2m", {}), "dpmpp_3m": ("dpmpp_3m", {}), "deis": ("deis", {}), "ipndm": ("ipndm", {}),
    "pndm": ("pndm", {}), "unipc": ("unipc", {}), "unipc bh1": ("unipc", {"variant": "bh1"}),
    "unipc-2": ("unipc", {"order": 2}),
}
OUR_SCHEDULES = ["uniform", "leading", "trailing", "quadratic", "logsnr", "karras", "auto"]
FIXED = [s for s in OUR_SCHEDULES if s != "auto"]
FAST = ("dpmpp_2m", "dpmpp_3m", "unipc", "deis", "ipndm", "heun", "dpmpp_2s")  # fast ODE solvers: their defaults count
AUTO_SLACK = 1.1  # 'auto' at most 10% worse than the best fixed schedule
AUTO_FOR = {"ipndm", "unipc", "unipc bh1", "dpmpp_3m", "dpmpp_2m", "deis"}  # fits cost CPU time: the contenders


MIXTURES = ("random", "digits", "random2")  # random2 is held out: nothing is tuned on it


def mixtures() -> dict:
    ds = load_dataset("digits")
    return {"random": GaussianMixture.random(16, 8, seed=0),
            "digits": GaussianMixture.fit_classes(ds.x, ds.y),
            "random2": GaussianMixture.random(32, 12, seed=7)}


class Counter:
    def __init__(self):
        self.n = 0


def error(x, ref, spread) -> float:
    return float((x.double() - ref).pow(2).mean().sqrt() / spread)


def ground_truth(oracle, x_T):
    times = sampling_times(PROCESS, 2)
    return rk45_sample(oracle, x_T, times, rtol=1e-10, atol=1e-10)


# --- ours -------------------------------------------------------------------------------------------------------------

def steps_for(oracle, x_T, name, nfe, cache):
    """The most steps whose counted NFE fits the budget (NFE does not depend on the schedule)."""
    sampler, options = OURS[name]
    for steps in range(nfe, 0, -1):
        key = (name, steps)
        if key not in cache:
            stats = {}
            sample(oracle, x_T[:1], sampler, times=sampling_times(PROCESS, steps, "logsnr"), stats=stats, **options)
            cache[key] = stats["nfe"]
        if cache[key] <= nfe:
            return steps, cache[key]
    return None, None


def run_ours(oracle, x_T, name, schedule, nfe, cache):
    """(x, used NFE) for our sampler with the most steps whose NFE fits the budget; None if none fits."""
    sampler, options = OURS[name]
    steps, used = steps_for(oracle, x_T, name, nfe, cache)
    if steps is None:
        return None
    try:
        times = (auto_schedule(oracle, sampler, steps, tuple(x_T.shape[1:]), options=options)
                 if schedule == "auto" else sampling_times(PROCESS, steps, schedule))
    except ValueError:  # a schedule that repeats a time at this many steps
        return None
    return sample(oracle, x_T, sampler, times=times, **options), used


# --- k-diffusion --------------------------------------------------------------------------------------------------------

K_SAMPLERS = {"k euler": ("sample_euler", {}), "k heun": ("sample_heun", {}), "k dpm_2": ("sample_dpm_2", {}),
              "k lms": ("sample_lms", {}), "k dpmpp_2s": ("sample_dpmpp_2s_ancestral", {"eta": 0.0}),
              "k dpmpp_2m": ("sample_dpmpp_2m", {}), "k dpmpp_3m": ("sample_dpmpp_3m_sde", {"eta": 0.0})}


def run_k(ks, oracle, x_T, name, nfe):
    fn_name, kw = K_SAMPLERS[name]
    fn = getattr(ks, fn_name)
    levels = PROCESS.noise_level(torch.tensor([PROCESS.t_eps, PROCESS.t_max], dtype=torch.float64))
    base = k_model(oracle)
    for steps in range(nfe, 0, -1):
        sigmas = ks.get_sigmas_karras(steps, float(levels[0]), float(levels[1]), rho=7.0).double()
        c = Counter()

        def model(x, sigma, **extra):
            c.n += 1
            return base(x, sigma)
        x = fn(model, x_T[:1] / PROCESS.alpha(torch.tensor(PROCESS.t_max, dtype=torch.float64)), sigmas,
               disable=True, **kw)
        if c.n <= nfe:
            c.n = 0
            x = fn(model, x_T / PROCESS.alpha(torch.tensor(PROCESS.t_max, dtype=torch.float64)), sigmas,
                   disable=True, **kw)
            return x, c.n
    return None


# --- diffusers --------------------------------------------------------------------------------------------------------

D_SCHEDULERS = {
    "diffusers DDIM": ("DDIMScheduler", {"clip_sample": False, "set_alpha_to_one": True}),
    "diffusers DPM++ 2M": ("DPMSolverMultistepScheduler", {"solver_order": 2}),
    "diffusers DPM++ 3M": ("DPMSolverMultistepScheduler", {"solver_order": 3}),
    "diffusers UniPC": ("UniPCMultistepScheduler", {"solver_order": 3}),
    "diffusers UniPC-2": ("UniPCMultistepScheduler", {"solver_order": 2}),
    "diffusers DEIS": ("DEISMultistepScheduler", {"solver_order": 3}),
    "diffusers Euler": ("EulerDiscreteScheduler", {}),
    "diffusers Heun": ("HeunDiscreteScheduler", {}),
    "diffusers LMS": ("LMSDiscreteScheduler", {}),
    "diffusers PNDM": ("PNDMScheduler", {}),
}
D_SPACINGS = [("linspace", False), ("leading", False), ("trailing", False), ("linspace", True)]


def _diffusers_loop(sched, oracle, x_T, counter):
    """diffusers' pipeline loop; the model is evaluated at the noise level the scheduler itself uses."""
    x = x_T * sched.init_noise_sigma
    for t in sched.timesteps:
        x_in = sched.scale_model_input(x, t)
        sigmas = getattr(sched, "sigmas", None)
        if sigmas is not None and getattr(sched, "step_index", None) is not None:
            level = sigmas[sched.step_index].double()
            tt = PROCESS.t_from_noise_level(level.clamp(min=1e-12))
        else:
            tt = torch.as_tensor(t, dtype=torch.float64)
        counter.n += 1
        pred = oracle(x_in.double(), tt.expand(len(x)), None)
        x = sched.step(pred.eps, t, x).prev_sample
    # the level the loop stopped at: zero for schedulers that end on the data
    final = _final_level(sched)
    if final > 0:
        counter.n += 1
        t_end = PROCESS.t_from_noise_level(torch.tensor(final, dtype=torch.float64))
        vp = x if not _ve(sched) else x / math.sqrt(final**2 + 1)
        x = oracle(vp.double(), t_end.expand(len(x)), None).x0
    return x  # the others end at sigma = 0, where x is the data


def _ve(sched) -> bool:
    return type(sched).__name__ in ("EulerDiscreteScheduler", "HeunDiscreteScheduler", "LMSDiscreteScheduler")


def _final_level(sched) -> float:
    name = type(sched).__name__
    if name in ("DEISMultistepScheduler",):
        return float(sched.sigmas[-1])
    if name == "PNDMScheduler":
        return 0.0 if sched.config.set_alpha_to_one else float(((1 - PROCESS.alpha_bar[0]) / PROCESS.alpha_bar[0]).sqrt())
    return 0.0


def run_diffusers(diffusers, oracle, x_T, name, nfe, spacing, karras):
    cls_name, kw = D_SCHEDULERS[name]
    cls = getattr(diffusers, cls_name)
    extra = {"timestep_spacing": spacing}
    if karras:
        if "use_karras_sigmas" not in cls.__init__.__code__.co_varnames:
            return None
        extra["use_karras_sigmas"] = True
    for steps in range(nfe, 0, -1):
        try:
            sched = cls(num_train_timesteps=1000, beta_schedule="linear", **kw, **extra)
            sched.alphas_cumprod = PROCESS.alpha_bar.clone()
            sched.set_timesteps(steps)
        except Exception:
            continue
        c = Counter()
        with torch.no_grad():
            _diffusers_loop(sched, oracle, x_T[:1], c)
        if c.n > nfe:
            continue
        sched.set_timesteps(steps)
        if hasattr(sched, "_step_index"):
            sched._step_index = None
        c = Counter()
        with torch.no_grad():
            x = _diffusers_loop(sched, oracle, x_T, c)
        return x, c.n
    return None


def best_curves(rows: list, mixture: str) -> dict:
    """Per NFE, the lowest error of: ours with the automatic schedule, ours with a fixed schedule, each anchor."""
    groups = {"denoisekit, automatic schedule": lambda r: r["library"] == "denoisekit" and r["schedule"] == "auto",
              "denoisekit, fixed schedules": lambda r: r["library"] == "denoisekit" and r["schedule"] != "auto",
              "diffusers (best scheduler and spacing)": lambda r: r["library"] == "diffusers",
              "k-diffusion (best sampler, Karras sigmas)": lambda r: r["library"] == "k-diffusion"}
    out = {}
    for label, keep in groups.items():
        per = {}
        for r in rows:
            if r["mixture"] == mixture and keep(r) and math.isfinite(r["error"]):
                if r["nfe"] not in per or r["error"] < per[r["nfe"]]:
                    per[r["nfe"]] = r["error"]
        out[label] = sorted(per.items())
    return out


def plot(result: dict, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mixtures = list(result["summary"])
    fig, axes = plt.subplots(1, len(mixtures), figsize=(4.2 * len(mixtures), 3.6), dpi=110, squeeze=False)
    for ax, mix in zip(axes[0], mixtures):
        for label, pts in best_curves(result["rows"], mix).items():
            if pts:
                ax.plot(*zip(*pts), marker="o", label=label)
        ax.set_xscale("log"), ax.set_yscale("log"), ax.grid(True, which="both", alpha=0.3)
        ax.set_xticks(result["nfe"]), ax.set_xticklabels([str(n) for n in result["nfe"]]), ax.minorticks_off()
        ax.set_title(f"mixture '{mix}'", fontsize=9), ax.set_xlabel("network evaluations (NFE)")
    axes[0][0].set_ylabel("RMS error / data spread")
    axes[0][0].legend(fontsize=7)
    return save_figure(fig, path)


FIGURE = Path(__file__).resolve().parents[1] / "docs" / "figures" / "sampler_accuracy.png"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nfe", default="5,10,20,50")
    p.add_argument("--n", type=int, default=1024, help="noises per mixture (RMS errors at few NFE hinge on the rare "
                   "noise that a coarse solver sends to another mixture component: 256 left ratios noisy)")
    p.add_argument("--mixtures", default="random,digits,random2")
    p.add_argument("--plot-only", action="store_true", help="redraw the figure from the last JSON")
    args = p.parse_args()
    if args.plot_only:
        import json
        from common import RESULTS
        print(f"wrote {plot(json.loads((RESULTS / 'sampler_accuracy.json').read_text()), FIGURE)}")
        return 0
    nfes, names = [int(v) for v in args.nfe.split(",") if v.strip()], [m for m in args.mixtures.split(",") if m]
    if not any(n <= GOAL_NFE for n in nfes):
        p.error(f"--nfe: the goal is judged at NFE <= {GOAL_NFE}; give at least one such budget, got {args.nfe!r}")
    if args.n < 2:
        p.error(f"--n: expected at least 2 noises per mixture, got {args.n}")
    unknown = [m for m in names if m not in MIXTURES]
    if not names or unknown:
        p.error(f"--mixtures: expected a comma-separated subset of {', '.join(MIXTURES)}, got {args.mixtures!r}")
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    ks = load_k_sampling()
    import diffusers
    diffusers.utils.logging.set_verbosity_error()
    rows, summary = [], {}
    for mix_name in names:
        gmm = mixtures()[mix_name]
        oracle = gmm.denoiser(PROCESS).double()
        spread = float(gmm.sample(20000, torch.Generator().manual_seed(0))[0].var(0).mean().sqrt())
        x_T = PROCESS.prior_sample((args.n, gmm.dim), torch.Generator().manual_seed(1), dtype=torch.float64)
        t0 = time.perf_counter()
        ref = ground_truth(oracle, x_T)
        print(f"\n== {mix_name}: d = {gmm.dim}, K = {len(gmm.w)}; ground truth in {time.perf_counter() - t0:.1f}s")
        cache: dict = {}
        for nfe in nfes:
            best = {}
            for name in OURS:
                for schedule in OUR_SCHEDULES:
                    if schedule == "auto" and name not in AUTO_FOR:
                        continue
                    out = run_ours(oracle, x_T, name, schedule, nfe, cache)
                    if out is not None:
                        rows.append({"mixture": mix_name, "nfe": nfe, "library": "denoisekit", "sampler": name,
                                     "schedule": schedule, "used_nfe": out[1], "error": error(out[0], ref, spread)})
            if ks is not None:
                for name in K_SAMPLERS:
                    out = run_k(ks, oracle, x_T, name, nfe)
                    if out is not None:
                        rows.append({"mixture": mix_name, "nfe": nfe, "library": "k-diffusion", "sampler": name,
                                     "schedule": "karras", "used_nfe": out[1], "error": error(out[0], ref, spread)})
            for name in D_SCHEDULERS:
                for spacing, karras in D_SPACINGS:
                    out = run_diffusers(diffusers, oracle, x_T, name, nfe, spacing, karras)
                    if out is not None:
                        rows.append({"mixture": mix_name, "nfe": nfe, "library": "diffusers", "sampler": name,
                                     "schedule": spacing + (" karras" if karras else ""), "used_nfe": out[1],
                                     "error": error(out[0], ref, spread)})
            here = [r for r in rows if r["mixture"] == mix_name and r["nfe"] == nfe and math.isfinite(r["error"])]
            for lib in ("denoisekit", "anchor"):
                cands = [r for r in here if (r["library"] == "denoisekit") == (lib == "denoisekit")]
                best[lib] = min(cands, key=lambda r: r["error"])
            ratio = best["denoisekit"]["error"] / best["anchor"]["error"]
            summary.setdefault(mix_name, {})[nfe] = {"ours": best["denoisekit"], "anchor": best["anchor"],
                                                     "ratio": ratio}
            b, a = best["denoisekit"], best["anchor"]
            print(f"NFE {nfe:3d}: ours {b['error']:.2e} ({b['sampler']}, {b['schedule']}, {b['used_nfe']})  "
                  f"best anchor {a['error']:.2e} ({a['sampler']}, {a['schedule']}, {a['used_nfe']})  "
                  f"ratio {ratio:.3f}", flush=True)
    print("\nBest per sampler (error at NFE " + ", ".join(map(str, nfes)) + "):")
    table = {}
    for r in rows:
        key = (r["mixture"], r["library"], r["sampler"])
        cur = table.setdefault(key, {})
        if r["nfe"] not in cur or r["error"] < cur[r["nfe"]]["error"]:
            cur[r["nfe"]] = r
    for (mix, lib, name), per in sorted(table.items()):
        cells = "  ".join(f"{per[n]['error']:.1e} ({per[n]['schedule']})" if n in per else "   -   " for n in nfes)
        print(f"{mix:8s} {lib:11s} {name:22s} {cells}")
    defaults = current_defaults()
    print("\nEach fast solver's default schedule against the best anchor (worst ratio at NFE <= 20 over the mixtures), "
          "and the fixed schedule that would do best:")
    for name in FAST:
        worst = {sch: worst_ratio(rows, name, sch) for sch in FIXED}
        pick = min(worst, key=worst.get)
        print(f"  {name:10s} default {defaults[name]:9s} {worst[defaults[name]]:6.2f}x   best fixed {pick:9s} "
              f"{worst[pick]:6.2f}x")
    result = {"nfe": nfes, "n": args.n, "rows": rows, "summary": summary, "default_schedules": defaults,
              "goal_0.8x_at_nfe_5_10_20": goal_by_mixture(summary), "figure": "docs/figures/sampler_accuracy.png"}
    path = write_result("sampler_accuracy", result)
    print(f"\nwrote {path} and {plot(result, FIGURE)}")
    return verdict(claims(summary) + default_claims(rows, defaults) + auto_claims(rows))


GOAL_NFE, GOAL_RATIO = 20, 0.8


def anchor_best(rows: list) -> dict:
    """(mixture, nfe) -> the lowest anchor error (diffusers or k-diffusion, any scheduler and spacing)."""
    out: dict = {}
    for r in rows:
        if r["library"] != "denoisekit" and math.isfinite(r["error"]):
            key = (r["mixture"], r["nfe"])
            out[key] = min(out.get(key, math.inf), r["error"])
    return out


def current_defaults() -> dict:
    """Each fast solver's registered default schedule (the rows hold every fixed schedule, so any default is judged)."""
    return {name: DEFAULT_SCHEDULES.get(OURS[name][0], "karras") for name in FAST}


def worst_ratio(rows: list, name: str, schedule: str) -> float:
    """Our sampler `name` with `schedule`: its largest error / the best anchor's over mixtures and NFE <= GOAL_NFE."""
    anchors = anchor_best(rows)
    ratios = [r["error"] / anchors[(r["mixture"], r["nfe"])] for r in rows if r["library"] == "denoisekit"
              and r["sampler"] == name and r["schedule"] == schedule and r["nfe"] <= GOAL_NFE
              and (r["mixture"], r["nfe"]) in anchors]
    return max(ratios) if ratios else math.inf


def default_claims(rows: list, defaults: dict) -> list:
    """Each fast ODE solver with no schedule named (its default) at most the best anchor's error at every NFE <= 20 on
    every mixture."""
    return [(f"{name} with its default schedule ({schedule}) at most the best anchor's error at NFE <= {GOAL_NFE} on "
             f"every mixture: worst {worst_ratio(rows, name, schedule):.2f}x", worst_ratio(rows, name, schedule) <= 1)
            for name, schedule in defaults.items()]


def auto_claims(rows: list) -> list:
    """'auto' at most AUTO_SLACK x the best fixed schedule's error, for every sampler it was run for, at every NFE."""
    best: dict = {}
    for r in rows:
        if r["library"] == "denoisekit" and r["schedule"] in FIXED and math.isfinite(r["error"]):
            key = (r["mixture"], r["nfe"], r["sampler"])
            best[key] = min(best.get(key, math.inf), r["error"])
    ratios = [(r["error"] / best[k], k) for r in rows if r["library"] == "denoisekit" and r["schedule"] == "auto"
              for k in [(r["mixture"], r["nfe"], r["sampler"])] if k in best]
    if not ratios:
        raise ValueError("no sampler was run with the automatic schedule")
    worst, (mix, nfe, name) = max(ratios)
    return [(f"auto at most {AUTO_SLACK}x the best fixed schedule everywhere (worst {worst:.2f}x: {name}, {mix}, NFE "
             f"{nfe})", worst <= AUTO_SLACK)]


def goal_by_mixture(summary: dict) -> dict:
    """Per mixture: ours at most GOAL_RATIO x the best anchor's error at every measured NFE <= GOAL_NFE."""
    return {m: all(cell["ratio"] <= GOAL_RATIO for n, cell in per.items() if int(n) <= GOAL_NFE)
            for m, per in summary.items()}


def claims(summary: dict) -> list:
    """One claim per mixture, the held-out one included (nothing was tuned on it); each needs a budget <= GOAL_NFE."""
    out = []
    for m, per in summary.items():
        cells = {int(n): cell["ratio"] for n, cell in per.items() if int(n) <= GOAL_NFE}
        if not cells:
            raise ValueError(f"mixture {m!r}: no budget at NFE <= {GOAL_NFE} was measured")
        worst = max(cells, key=cells.get)
        out.append((f"{m}: ours <= {GOAL_RATIO}x the best anchor at NFE {', '.join(map(str, sorted(cells)))} "
                    f"(worst {cells[worst]:.3f}x at NFE {worst})", all(r <= GOAL_RATIO for r in cells.values())))
    return out


if __name__ == "__main__":
    sys.exit(main())
