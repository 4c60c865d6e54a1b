"""Render benchmarks/results/*.json into the site's results page, docs/benchmarks.md (between the markers
<!-- results:start --> and <!-- results:end -->). Numbers come only from the JSON files the scripts wrote."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from common import demo_config  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
START, END = "<!-- results:start -->", "<!-- results:end -->"


def _load(name: str):
    f = RESULTS / f"{name}.json"
    return json.loads(f.read_text()) if f.exists() else None


def _machine(d: dict) -> str:
    m = d["machine"]
    gpu = f", {d['gpu']}" if d.get("gpu") else ""
    return f"{m['cpu']}, {m['cores']} cores{gpu}, torch {m['torch']}, {m['date']}"


def throughput_section(d: dict, title: str) -> list[str]:
    if "best_speedup" in d:  # each setting on and off, against the baseline, in one run
        peak = d["matmul_peak_gflops"]
        out = [f"**{title}** ({_machine(d)}; the demo net's training step; matmul peak measured in the same run: fp32 "
               f"{peak['fp32']:.0f}, bf16 {peak['bf16']:.0f} GFLOP/s):", "",
               "| setting | batch | training images / s | x baseline | achieved GFLOP/s | of fp32 peak |",
               "|---|---:|---:|---:|---:|---:|"]
        base = d["baseline_images_per_s"]
        out += [f"| {r['setting']} | {r['batch']} | {r['train_images_per_s']:,.1f} | "
                f"{r['train_images_per_s'] / base:.2f} | {r['achieved_gflops']:.1f} | "
                f"{r['fraction_of_fp32_peak']:.0%} |" for r in d["rows"]]
        out += [f"| {s['setting']} | | skipped: {s['why']} | | | |" for s in d.get("skipped", [])]
        return out + ["", f"Best setting: {d['best']}, **{d['best_speedup']:.2f}x** the baseline; the baseline "
                      f"**{d['speedup']:.1f}x** denoising-diffusion-pytorch's.", ""]
    rows = [dict(r) for r in d["rows"]]
    earlier = not _is_demo_net(d.get("our_net"))  # measured before configs/demo.yaml changed its network
    if earlier:
        rows[0]["model"] = f"denoisekit ({_net(d.get('our_net'))})"
    out = [f"**{title}** ({_machine(d)}; batch {d['batch']}{', bf16 autocast' if d.get('amp') else ''}):", "",
           "| model | parameters | forward GFLOP / image | training images / s |", "|---|---:|---:|---:|"]
    out += [f"| {r['model']} | {r['parameters']:,} | {r['forward_gflops_per_image']:.3f} | "
            f"{r['train_images_per_s']:,.1f} |" for r in rows]
    which = "that earlier net (not yet re-measured with the current demo net)" if earlier else "the demo model"
    out += ["", f"Speed-up of {which}: **{d['speedup']:.1f}x**.", ""]
    return out


def _is_demo_net(net) -> bool:
    """Whether a recorded network config is the one configs/demo.yaml builds now."""
    return net == demo_config()["net"]


def _net(net) -> str:
    """A recorded U-Net config in words (channels x (mults), patches, attention), or 'an earlier demo net'."""
    if not net:
        return "an earlier demo net"
    words = f"{net.get('channels')} x ({', '.join(map(str, net.get('channel_mult', [])))})"
    if net.get("patch_size", 1) > 1:
        words += f", {net['patch_size']}x{net['patch_size']} patches"
    if net.get("attention_levels"):
        words += f", attention at levels {list(net['attention_levels'])}"
    return words


def vs_section(d: dict, figure_prefix: str) -> list[str]:
    out = [f"**Same wall clock, same evaluator** ({_machine(d)}): each library trained on MNIST-5k for "
           f"{d['budget_s']:.0f} s of its own time (alternating rounds), then {d['n']} samples with {d['nfe']} "
           f"network evaluations each, scored in the reference classifier's features (held-out accuracy "
           f"{d['evaluator']['classifier_accuracy']:.1%}; two disjoint halves of the data score FD "
           f"{d['evaluator']['fd_data_halves']:.3f}).", "",
           "| library | parameters | steps | training images / s | sampler | Frechet distance | precision | recall |"
           " classifier score |", "|---|---:|---:|---:|---|---:|---:|---:|---:|"]
    ours = (f"{d['our_sampler']}, {d['our_spacing']} schedule" if "our_sampler" in d
            else f"DDPM ancestral, {d['our_spacing']}")  # results from before --sampler ran DDPM
    samplers = {"denoisekit": ours, "denoising-diffusion-pytorch": "its DDIM"}
    for r in d["rows"]:
        out.append(f"| {r['library']} | {r['parameters']:,} | {r['train_steps']:,} | {r['train_images_per_s']:.1f} | "
                   f"{samplers.get(r['library'], '')} | {r['fd']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | "
                   f"{r['classifier_score']:.2f} |")
    if "fd_ratio_interval" in d:
        lo, hi = d["fd_ratio_interval"]
        verdict = "met" if hi <= d["required"] else "NOT met"
        fds = "; ".join(f"{r['library']} " + ", ".join(f"{v:.3f}" for v in r["fd_seeds"]) for r in d["rows"])
        words = (f"Our Frechet distance is **{d['fd_ratio']:.3f}x** theirs, mean of the per-seed ratios over sample "
                 f"seeds {d['seeds']} (95% interval {lo:.3f} .. {hi:.3f}; the table shows seed {d['seeds'][0]}; FD "
                 f"per seed: {fds}). Goal: at most {d['required']}x, judged on the interval's upper end: {verdict}.")
    else:  # a result from before the seed interval
        verdict = "met" if d["fd_ratio"] <= d["required"] else "NOT met"
        words = (f"Our Frechet distance is **{d['fd_ratio']:.3f}x** theirs from one sample seed (goal: at most "
                 f"{d['required']}x; {verdict} on that seed, with no interval).")
    out += ["", words,
            "", f"![denoisekit vs denoising-diffusion-pytorch]({figure_prefix}{Path(d['figure']).name})", ""]
    return out


def nfe_section(d: dict, figure_prefix: str) -> list[str]:
    res = d["results"]
    nfes = sorted({r["nfe"] for r in res})
    labels = list(dict.fromkeys(r["label"] for r in res))
    table = {(r["label"], r["nfe"]): r["fd"] for r in res}
    net = _net(d.get("net")) + ("" if _is_demo_net(d.get("net")) else ", not the current demo net")
    out = [f"**Quality against network evaluations** ({_machine(d)}; model `{Path(d['run']).name}` ({net}), {d['n']} samples "
           f"a point, {res[0]['spacing'] or 'each sampler with its default'} schedule; Frechet distance in classifier features, lower is better; two "
           f"halves of the data: {d['evaluator']['fd_data_halves']:.3f}):", "",
           "| sampler | " + " | ".join(f"NFE {n}" for n in nfes) + " |", "|---|" + "---:|" * len(nfes)]
    for label in labels:
        out.append(f"| {label} | " + " | ".join(f"{table[(label, n)]:.3f}" if (label, n) in table else ""
                                             for n in nfes) + " |")
    out += ["", f"![quality vs NFE]({figure_prefix}{Path(d['figure']).name})", ""]
    return out


def sweep_section(d: dict) -> list[str]:
    out = [f"**U-Nets at equal wall clock** ({_machine(d)}; `benchmarks/architecture_sweep.py`: each trained on "
           f"MNIST-5k for {d['budget_s']:.0f} s as in the comparison above, {d['n']} samples with {d['nfe']} ancestral "
           f"steps):", "", "| network | parameters | steps | training images / s | Frechet distance | precision | recall |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    out += [f"| {r['variant']} | {r['parameters']:,} | {r['steps']:,} | {r['train_images_per_s']:.1f} | {r['fd']:.3f} | "
            f"{r['precision']:.3f} | {r['recall']:.3f} |" for r in d["rows"]]
    return out + [""]


def profile_section(before: dict, after: dict) -> list[str]:
    """Where a training step's time goes, by kind of op, at the demo's batch and at the fastest setting."""
    def label(d):
        return f"batch {d['batch']}{', channels-last' if d.get('channels_last') else ''}"
    kinds = [r["kind"] for r in before["by_kind"]]
    b, a = ({r["kind"]: r for r in d["by_kind"]} for d in (before, after))
    out = [f"**Where a training step's time goes** ({_machine(before)}; `benchmarks/train_profile.py`: torch.profiler "
           f"self CPU time by kind of op; before: {label(before)}, {before['images_per_s']:.0f} images/s, "
           f"{before['achieved_gflops']:.0f} GFLOP/s; after: {label(after)}, {after['images_per_s']:.0f} images/s, "
           f"{after['achieved_gflops']:.0f} GFLOP/s, against an fp32 matmul peak of "
           f"{after['matmul_peak_gflops']['fp32']:.0f}):", "",
           "| kind of op | before: ms / image | share | after: ms / image | share |", "|---|---:|---:|---:|---:|"]
    for k in kinds:
        rb, ra = b[k], a.get(k, {"ms_per_step": 0.0, "share": 0.0})
        out.append(f"| {k} | {rb['ms_per_step'] / before['batch']:.3f} | {rb['share']:.0%} | "
                   f"{ra['ms_per_step'] / after['batch']:.3f} | {ra['share']:.0%} |")
    return out + [""]


def ablation_section(d: dict) -> list[str]:
    """The training-settings ablation at the demo's minutes, and the FD against post-hoc EMA length."""
    import ablation
    seeds = ", ".join(map(str, d["seeds"]))
    out = [f"**Training settings at the demo's minutes** ({_machine(d)}; `benchmarks/ablation.py`: each row trains "
           f"configs/demo.yaml with one change for the steps the demo's minutes buy, EMA 0.999; Frechet distance of "
           f"{d['n']:,} samples at 20 NFE, mean +- standard error over sample seeds {seeds} for the best sampler of "
           f"each kind):", "",
           "| variant | steps x batch | best stochastic (FD) | best deterministic (FD) |", "|---|---:|---|---|"]
    order = list(ablation.VARIANTS)
    rows = sorted(d["rows"], key=lambda r: order.index(r["variant"]) if r["variant"] in order else len(order))
    for r in rows:
        cells = []
        for kind in (True, False):
            b = ablation.best(r["samplers"], kind)
            se = f" +- {b['fd_se']:.3f}" if b.get("fd_se") is not None else ""
            cells.append(f"{b['sampler']}: {b['fd_mean']:.3f}{se}")
        out.append(f"| {r['description']} | {r['steps']:,} x {r['batch_size']} | {cells[0]} | {cells[1]} |")
    for r in d["rows"]:
        if r.get("ema_curve"):
            pts = ", ".join(f"{p['sigma_rel']:g}: {p['fd']:.3f}" for p in r["ema_curve"])
            out += ["", f"Post-hoc EMA of the {r['variant']} row (reconstructed from its two profiles, sigma_rel 0.05 "
                    f"and 0.1; {r['ema_curve'][0]['sampler']}, sample seed {d['seeds'][0]}): FD by sigma_rel {pts}."]
    return out + [""]


def accuracy_section(d: dict, figure_prefix: str) -> list[str]:
    nfes = d["nfe"]
    out = [f"**Sampler accuracy per network evaluation** ({_machine(d)}; `benchmarks/sampler_accuracy.py`: an "
           f"analytic Gaussian mixture is the model, the truth is the probability-flow ODE from the same {d['n']} "
           f"noises solved to 1e-10; RMS error / data spread, lower is better; each library's best sampler and "
           f"spacing at each budget, NFE counted):", "",
           "| mixture | NFE | ours (sampler, schedule) | best anchor (sampler, schedule) | ratio |", "|---|---:|---|---|---:|"]
    for mix, per in d["summary"].items():
        for n in nfes:
            s = per.get(str(n)) or per.get(n)
            if s:
                o, a = s["ours"], s["anchor"]
                out.append(f"| {mix} | {n} | {o['error']:.2e} ({o['sampler']}, {o['schedule']}) | {a['error']:.2e} "
                           f"({a['sampler']}, {a['schedule']}) | **{s['ratio']:.3f}** |")
    goal = d.get("goal_0.8x_at_nfe_5_10_20", {})
    held = [m for m in goal if m not in ("random", "digits")]
    out += ["", "Goal, ours at most 0.8x the best anchor at NFE 5, 10 and 20 on the 'random' and 'digits' mixtures: " +
            ", ".join(f"{m} {'met' if goal[m] else 'NOT met'}" for m in goal if m not in held) + "." +
            "".join(f" On the held-out '{m}' (nothing was tuned on it) it is " + ("met" if goal[m] else "not met: "
                    + ", ".join(f"{s['ratio']:.2f}x at NFE {n}" for n, s in d["summary"][m].items()
                                if int(n) <= 20 and s["ratio"] > 0.8)) + "." for m in held), "",
            f"![sampler accuracy]({figure_prefix}sampler_accuracy.png)", ""]
    return out + (schedule_table(d) if "default_schedules" in d else [])


def schedule_table(d: dict) -> list[str]:
    """Each fast solver's worst error ratio to the best anchor (NFE <= 20, every mixture) under each schedule."""
    import sampler_accuracy as m
    head = m.FIXED + ["auto"]
    out = [f"**Schedules, each fast ODE solver against the best anchor**: the largest ratio of its error to the best "
           f"diffusers / k-diffusion sampler's (any scheduler, spacing or sigmas) over every mixture and NFE <= "
           f"{m.GOAL_NFE}; at most 1 means it beats every anchor everywhere. The default (no schedule named) is "
           f"bold.", "", "| solver | " + " | ".join(head) + " |", "|---|" + "---:|" * len(head)]
    for name, default in m.current_defaults().items():
        cells = []
        for sch in head:
            w = m.worst_ratio(d["rows"], name, sch)
            cell = "-" if w == float("inf") else f"{w:.2f}"
            cells.append(f"**{cell}**" if sch == default else cell)
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return out + [""]


def default_schedules_section(d: dict) -> list[str]:
    """Per fast ODE solver and schedule: the worst error ratio to the best anchor on the mixtures and the trained
    model's FD; the pick in bold."""
    import default_schedules as m
    first = next(iter(d["solvers"].values()))
    reaches = d.get("reaches_smallest_level") or m.reaches_smallest_level(m.demo_process())
    head = list(first["fd"])
    out = [f"**Default schedules, chosen by measurement** (`benchmarks/default_schedules.py`, {_machine(d)}): each "
           f"cell is the worst ratio of the solver's error to the best anchor's on the analytic mixtures (NFE <= 20, "
           f"every mixture; at most 1 beats every anchor everywhere) / the Frechet distance of {d['n']} samples at "
           f"{d['nfe']} NFE on the trained v-prediction demo model (`{Path(d['run']).name}`). The pick (bold, now each "
           f"solver's default): the lowest mixture ratio among the schedules within {d['slack']}x of the solver's "
           f"best FD on the trained model, of the schedules whose last network step is the smallest trained level "
           f"({', '.join(s for s, r in reaches.items() if not r)} stops short: its final denoising step narrows narrow "
           f"modes at any step count, so it is measured but never a default).", "", "| solver | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    for name, row in d["solvers"].items():
        cells, choice = [], m.pick(row["analytic_worst_ratio"], row["fd"], d["slack"], reaches)
        for s in head:
            a = row["analytic_worst_ratio"].get(s, float("inf"))
            cell = f"{'-' if a == float('inf') else f'{a:.2f}x'} / {row['fd'][s]:.3f}"
            cells.append(f"**{cell}**" if s == choice else cell)
        out.append(f"| {name} ({row['steps']} steps) | " + " | ".join(cells) + " |")
    return out + [""]


def overhead_section(d: dict) -> list[str]:
    out = [f"**Sampler overhead** ({_machine(d)}; `benchmarks/sampler_overhead.py`: a trivial model, batch 1, "
           f"{'x'.join(map(str, d['shape']))}, {d['threads']} thread, {d['steps']} steps, median of {d['rounds']} "
           f"alternating rounds, whole sampling call):", "",
           "| algorithm | ours, us / step | diffusers, us / step | ratio |", "|---|---:|---:|---:|"]
    out += [f"| {r['algorithm']} | {r['ours_us_per_step']:.0f} | {r['diffusers_us_per_step']:.0f} | {r['ratio']:.2f} |"
            for r in d["rows"]]
    return out + ["", f"Goal, at most 0.5x: {'met' if d['goal_at_most_0.5x'] else 'NOT met'}.", ""]


def ddim_section(d: dict) -> list[str]:
    n = sorted({r["n"] for r in d["rows"]})
    return [f"**The DDIM paper's Table 1 on MNIST-5k** ({_machine(d)}; `benchmarks/ddim_table.py`: one model "
            f"({_net(d.get('net'))}), DDIM on uniform sub-sequences of S steps, {' / '.join(map(str, n))} samples a "
            f"cell, Frechet distance in the reference classifier's features, lower is better, best per column in "
            f"bold):", "", d["markdown"], ""] + ([
            "The same grid with an exact denoiser (the Gaussian mixture fitted to the 8x8 digits; Frechet distance in "
            "pixel space to draws of the mixture) shows the paper's pattern, so the reversal above comes from the "
            "trained model's errors, which stochastic steps correct and deterministic DDIM carries along:", "",
            d["control_markdown"], ""] if d.get("control_markdown") else [])


def guidance_section(d: dict, figure_prefix: str) -> list[str]:
    if not any(r["kind"] == "classifier" for r in d["rows"]):  # a CFG-only pass with another sampler
        out = [f"**The same CFG sweep with {d['sampler']}, {d['steps']} steps** ({_machine(d)}; same model, labels, "
               f"noises and evaluator; this is the demo model's best 20-step sampler, see below):", ""]
    else:
        out = [f"**Guidance on MNIST-5k: the fidelity-diversity trade-off** ({_machine(d)}; "
           f"`benchmarks/guidance_tradeoff.py`; {d['n']} samples a setting, balanced over the 10 classes, from the "
           f"same noises, {d['sampler']} with {d['steps']} steps; class accuracy by the evaluator's reference "
           f"classifier). CFG guides a class-conditional demo model trained with label dropout 0.1 (each step one "
           f"batched call of both branches); classifier guidance (score form) guides the unconditional demo model "
           f"with a noisy classifier, whose accuracy by noise level was "
           f"{', '.join(f'{k} {v:.2f}' for k, v in d['classifier_accuracy_by_t'].items())}:", ""]
    out += ["| guidance | scale | class accuracy | Frechet distance | precision | recall |", "|---|---:|---:|---:|---:|---:|"]
    for r in d["rows"]:
        name = "classifier-free (w)" if r["kind"] == "cfg" else "classifier (s)"
        out.append(f"| {name} | {r['scale']:g} | {r['class_accuracy']:.3f} | {r['fd']:.3f} | {r['precision']:.3f} | "
                   f"{r['recall']:.3f} |")
    goal = d.get("cfg_goal_97_at_w")
    out += ["", f"Goal (CFG at least 97% class accuracy at some w <= 3 with {d['sampler']}, {d['steps']} steps): "
            f"**{'met, at w = ' + format(goal, 'g') if goal is not None else 'not met'}**."]
    if any(r["kind"] == "classifier" for r in d["rows"]):
        out[-1] += (f" Classifier guidance's class accuracy "
                    f"{'rises monotonically' if d['classifier_accuracy_monotone'] else 'does not rise monotonically'}"
                    f" with s.")
    if d.get("figure"):
        out += ["", f"![guidance trade-off]({figure_prefix}guidance_tradeoff.png)"]
    if d.get("grid"):
        out += ["", f"CFG at w = 3, one row per class: ![CFG samples]({figure_prefix}cfg_grid.png)"]
    return out + [""]


def improved_ddpm_findings(rows: list, long: int, seeds: Optional[dict] = None) -> list[str]:
    """The paper's findings as the benchmark judges them (Nichol & Dhariwal 2021, sec. 3.1-3.2)."""
    from improved_ddpm import few_steps_claim, likelihood_claims
    judged = likelihood_claims(rows, long) + (few_steps_claim(seeds["rows"]) if seeds else [])
    return [f"{text[0].upper() + text[1:]}: **{'met' if met else 'NOT met'}**." for text, met in judged]


def improved_ddpm_section(d: dict, figure_prefix: str) -> list[str]:
    st = d["settings"]
    out = [f"**Improved DDPM on MNIST-5k: likelihood and sample quality by objective** ({_machine(d)}; "
           f"`benchmarks/improved_ddpm.py`). Three demo-configuration models, {st['train_steps']} steps of 32 each, "
           f"differing only in the objective. Bits/dim of {st['n_nll']} images ({st['bound']}; ODE: {st['ode']}), "
           f"mean +- 95% interval; Frechet distance of {st['n_fd']} ancestral samples at 50 respaced and "
           f"{st['long_steps']} steps (lower is better):", "",
           f"| objective | sampling variance | bound bits/dim | ODE bits/dim | FD, 50 steps | FD, {st['long_steps']} steps | "
           f"train s |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in d["rows"]:
        ode = f"{r['ode_bpd']:.3f} +- {r['ode_ci95']:.3f}" if "ode_bpd" in r else "(same model)"
        train = f"{r['train_seconds']:.0f}" if r.get("train_seconds") else "-"
        out.append(f"| {r['objective']} | {r['variance']} | {r['bound_bpd']:.3f} +- {r['bound_ci95']:.3f} | {ode} | "
                   f"{r['fd_50']:.2f} | {r.get('fd_' + str(st['long_steps']), float('nan')):.2f} | {train} |")
    seeds = _load("improved_ddpm_fd50")
    if seeds:
        out += ["", f"Frechet distance at 50 respaced steps over {len(seeds['settings']['seeds'])} sample seeds "
                f"({seeds['settings']['n_fd']} samples each; mean +- standard deviation): "
                + "; ".join(f"{r['objective']}/{r['variance']} {r['mean']:.3f} +- {r['std']:.3f}"
                            for r in seeds["rows"]) + "."]
    findings = improved_ddpm_findings(d["rows"], st["long_steps"], seeds)
    if findings:
        out += [""] + [f"- {f}" for f in findings]
    if d.get("figure"):
        out += ["", f"![terms of the bound]({figure_prefix}vlb_terms.png)"]
    return out + [""]


def score_based_section(d: dict, figure_prefix: str) -> list[str]:
    st = d["settings"]
    secs = st["train_seconds"]
    train = ", ".join(f"{k} {v:.0f} s" for k, v in secs.items() if v)
    out = [f"**Score-based models on MNIST-5k: DDPM, NCSN and a VE-SDE at one training budget** ({_machine(d)}; "
           f"`benchmarks/score_based.py`). The demo U-Net, {st['train_steps']} steps of 32 for each model"
           f"{f' ({train})' if train else ''}: DDPM with L_simple; NCSN with denoising score matching over "
           f"{st['ncsn_ladder']['levels']} geometric sigmas {st['ncsn_ladder']['sigma_max']} .. "
           f"{st['ncsn_ladder']['sigma_min']}; the VE SDE (sigma 0.01 .. 50) with denoising score matching over "
           f"t ~ U[t_eps, 1]. Frechet distance of {st['n_fd']} samples in the reference classifier's features (lower "
           f"is better), each sampler at about 200 network evaluations:", "",
           "| model | objective | sampling | NFE | Frechet distance | precision | recall | sample s |",
           "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in d["rows"]:
        out.append(f"| {r['model']} | {r['objective']} | {r['sampling']} | {r['nfe']} | {r['fd']:.3f} | "
                   f"{r['precision']:.2f} | {r['recall']:.2f} | {r['sample_seconds']:.0f} |")
    pics = [f"![{name}]({figure_prefix}{name}.png)" for name in ("ncsn_samples", "ve_pc_samples")
            if any(str(r.get("figure", "")).endswith(f"{name}.png") for r in d["rows"])]
    if pics:
        out += ["", "NCSN by annealed Langevin, and the VE SDE by PC: " + " ".join(pics)]
    return out + [""]


def pc_corrector_section(d: dict) -> list[str]:
    st = d["settings"]
    out = [f"**Predictor-corrector against the predictor alone at equal NFE** ({_machine(d)}; "
           f"`benchmarks/pc_corrector.py`). {st['mixture']}, {st['n']} samples per seed; predictor: {st['predictor']} "
           f"over {st['schedule']}; PC takes half the steps, each with a corrector ({st['corrector']}) before it, its "
           f"snr chosen on seeds {st['select_seeds']} and scored with the predictor alone on seeds {st['seeds']} (the "
           f"same prior noise for both). Sliced Wasserstein-2 distance to fresh mixture draws (floor between two "
           f"independent draws: {st['swd_floor']:.4f}); a difference is called beyond two standard errors of the "
           f"paired mean:", "", "| process | NFE | predictor alone | chosen PC | its SW2 | PC - alone | call |",
           "|---|---:|---:|---|---:|---:|---|"]
    for v in d["verdicts"]:
        out.append(f"| {v['process']} | {v['nfe']} | {v['predictor_swd']:.4f} | {v['best_pc']} | "
                   f"{v['best_pc_swd']:.4f} | {v['difference']:+.4f} +- {v['se']:.4f} | {v['call']} |")
    return out + [""]


def score_pictures_section(d: dict, figure_prefix: str) -> list[str]:
    w = d["mixture_weights"]
    fmt = ", ".join
    return [f"**Langevin dynamics on a 2-D mixture** ({_machine(d)}; `benchmarks/score_pictures.py`): an MLP trained "
            f"by DSM over NCSN's ladder for {d['train_steps']} steps. Mode weights: true "
            f"{fmt(f'{v:.2f}' for v in w['true'])}; annealed Langevin {fmt(f'{v:.2f}' for v in w['annealed'])}; plain "
            f"Langevin at the smallest sigma with the same NFE {fmt(f'{v:.2f}' for v in w['plain'])}; annealed Langevin "
            f"with the exact score {fmt(f'{v:.2f}' for v in w.get('annealed_exact_score', []))}.", "",
            f"![score field and Langevin trajectories]({figure_prefix}langevin_score_field.png)", "",
            f"![annealed Langevin across noise levels]({figure_prefix}annealed_langevin_2d.png)", ""]


def few_step_section(d: dict, figure_prefix: str) -> list[str]:
    """The few-step students against their teacher on MNIST-5k: FD by NFE (mean over seeds, the seeds' range), ratio to
    the teacher's best 20-NFE deterministic FD, training cost; the consistency models' tuned levels and untuned FDs."""
    rows, costs = d["rows"], d["costs"]
    ref = min((r for r in rows if r["method"] == "teacher" and r["nfe"] == 20 and not r["stochastic"]),
              key=lambda r: r["fd"])
    seeds = d.get("seeds", [d.get("seed", 0)])
    out = [f"**Few-step generation on MNIST-5k** ({_machine(d)}; `benchmarks/few_step.py`, FD of {d['n']} samples, "
           f"the mean over seeds {', '.join(map(str, seeds))}): the demo model as teacher (best deterministic and best "
           f"stochastic sampler at each NFE) and its students. Ratios are to the teacher's best 20-NFE deterministic "
           f"FD ({ref['label']}, {ref['fd']:.3f}).", "",
           "| model | NFE | sampler | FD | seeds' range | ratio | training |", "|---|---:|---|---:|---:|---:|---|"]
    for r in rows:
        cost = costs.get(r["method"])
        spent = ""
        if cost and cost["cpu_min"] == cost["cpu_min"]:  # not NaN
            what = (f"{cost['stages']} stages x {cost['steps_per_stage']} steps" if "stages" in cost
                    else f"{cost['steps']} steps")
            spent = f"{what}, {cost['cpu_min']:.1f} CPU-min"
        kind = "" if r["method"] != "teacher" else (" (stochastic)" if r["stochastic"] else " (deterministic)")
        spread = r.get("fd_seeds", [r["fd"]])
        out.append(f"| {r['method']}{kind} | {r['nfe']} | {r['label']} | {r['fd']:.3f} | "
                   f"{min(spread):.3f}-{max(spread):.3f} | {r['fd'] / ref['fd']:.2f}x | {spent} |")
    untuned = d.get("consistency_untuned", [])
    if untuned:
        from few_step import LEVEL_CANDIDATES
        out += ["", f"A consistency model's levels after the first evaluation were tuned greedily on seed "
                f"{d['tune_seed']} (held out) among {', '.join(map(str, LEVEL_CANDIDATES))}: "
                + "; ".join(f"{m}: {', '.join(f'{v:g}' for v in lv)}" for m, lv in d["tuned_levels"].items())
                + ". With the default trailing levels instead: "
                + "; ".join(f"{r['method']} at {r['nfe']} steps FD {r['fd']:.3f} ({r['fd'] / ref['fd']:.2f}x)"
                            for r in untuned) + "."]
    return out + ["", f"![few-step FD against NFE]({figure_prefix}few_step_fd.png)", "",
                  f"![few-step samples: one row per model and NFE, as in the table]({figure_prefix}few_step_grid.png)",
                  ""]


def few_step_cuda_section(d: dict) -> list[str]:
    """Students distilled on a GPU (benchmarks/device/), scored like few_step.py."""
    m = d["machine"]
    ref = d["rows"][0]
    out = [f"**Few-step students distilled on a GPU** ({m['gpu']}, {m['cpu_cores']} CPU cores, torch {m['torch']}, "
           f"{m['date']}; `benchmarks/device/`): {d['what']}", "",
           "| model | FD (mean of 3 seeds) | ratio to the teacher's 20-NFE UniPC |", "|---|---:|---:|"]
    out += [f"| {r['name']} | {r['mean']:.3f} | {r['mean'] / ref['mean']:.2f}x |" for r in d["rows"]]
    out += [""] + [f"- {name}: `{r['command']}`, {r.get('steps_done', '')}{' steps, ' if 'steps_done' in r else ''}"
                   f"{r['wall_s']} s wall, about {r['images_per_s']} training images/s; {r['note']}."
                   for name, r in d["runs"].items()]
    return out + [""]


def _judged(name: str, d: dict) -> list:
    """(claim, met) from benchmark `name`'s own claims() on its stored result."""
    import importlib
    m = importlib.import_module(name.removesuffix("_sde"))
    if name == "sampler_accuracy":
        extra = (m.default_claims(d["rows"], m.current_defaults()) + m.auto_claims(d["rows"])
                 if "default_schedules" in d else [])  # today's defaults, judged on the stored rows
        return m.claims(d["summary"]) + extra
    if name == "latent_cascade":
        return m.claims(d["rows"], d.get("trained"))
    if name == "processes_mnist":
        return m.claims(d["rows"], d.get("trained"))
    if name == "reflow_mnist":
        return m.claims(d["rows"], d["straightness"])
    if name == "lsgm_mnist":
        return m.claims(d["rows"], d["bounds"], d.get("trained"))
    if name == "text_mnist":
        return m.fidelity_claims(d["rows"])
    if name == "unclip_mnist":
        return m.claims(d["variations"], d["rows"])
    if name in ("ode_gap", "few_step", "trilemma", "flow_paths", "cld_paths", "imagen_mnist"):
        return m.claims(d["rows"])
    if name == "quality_vs_nfe":
        return m.claims(d["results"])
    if name == "ddim_table":
        return m.claims(d["control"])
    if name == "improved_ddpm":
        seeds = _load("improved_ddpm_fd50")
        return m.likelihood_claims(d["rows"], d["settings"]["long_steps"]) + (
            m.few_steps_claim(seeds["rows"]) if seeds else [])
    if name == "score_based":
        return m.claims(d["pc_vs_alone"])
    if name == "pc_corrector":
        return m.claims(d["verdicts"])
    if name == "score_pictures":
        return m.claims(d["mixture_weights"], d["n"])
    if name == "sampler_overhead" or name == "attention_layout":
        return m.claims(d["rows"])
    return m.claims(d)


VERDICTS = ("train_throughput", "sampler_overhead", "attention_layout", "sampler_accuracy", "vs_ddpm_pytorch",
            "quality_vs_nfe", "ddim_table", "guidance_tradeoff", "guidance_tradeoff_sde", "improved_ddpm",
            "score_based", "pc_corrector", "score_pictures", "ablation", "ode_gap", "bf16_loss",
            "default_schedules", "few_step", "trilemma", "latent_cascade", "flow_paths", "cld_paths", "processes_mnist",
            "reflow_mnist", "lsgm_mnist", "text_mnist", "imagen_mnist", "unclip_mnist")


def verdicts_section() -> list[str]:
    """Every benchmark's claims, judged by its own claims() on its stored result: what `make bench` would report."""
    out = ["**Verdicts of the latest runs** (each benchmark's stated goals and claims, judged by the script itself on "
           "its stored JSON; `make bench` exits non-zero while any is not met):", "",
           "| benchmark | claim | verdict |", "|---|---|---|"]
    for name in VERDICTS:
        d = _load(name)
        if not d:
            continue
        try:
            judged = _judged(name, d)
        except (KeyError, TypeError):
            judged = [("the stored result predates this verdict: rerun the benchmark", False)]
        out += [f"| {name} | {text} | {'met' if met else '**NOT met**'} |" for text, met in judged]
    return out + [""]


def processes_mnist_section(d: dict, prefix: str) -> list[str]:
    """Frechet distance against NFE for the four processes at equal training minutes, the better sampler of each."""
    import processes_mnist as m
    steps = sorted({r["steps"] for r in d["rows"]})
    out = [f"**Four processes on MNIST-5k at equal training minutes** ({_machine(d)}; `benchmarks/processes_mnist.py`: "
           f"the demo's U-Net, {d['budget_min']:.2f} min of training each, FD of {d['n']} samples, seed 0; each cell "
           f"the better of the model's two samplers, named):", "",
           "| model | minutes | " + " | ".join(f"{k} NFE" for k in steps) + " |", "|---|---:|" + "---:|" * len(steps)]
    minutes = {r["name"]: r["train_min"] for r in d.get("trained", [])}
    rows = [(name, label) for name, label in m.LABELS.items()] + [("sscs", "CLD, SSCS"), ("cld_em", "CLD, EM")]
    for key, label in rows:
        cells = []
        for k in steps:
            if key in ("sscs", "cld_em"):
                r = next((r for r in d["rows"] if r["sampler"] == key and r["steps"] == k), None)
                cells.append(f"{r['fd']:.3f}" if r else "")
            else:
                r = m.best(d["rows"], key, k)
                cells.append(f"{r['fd']:.3f} ({r['sampler']})" if r else "")
        mins = minutes.get(key, minutes.get("cld") if key in ("sscs", "cld_em") else None)
        out.append(f"| {label} | {mins:.2f} | " + " | ".join(cells) + " |" if mins is not None else
                   f"| {label} | | " + " | ".join(cells) + " |")
    return out + ["", f"![FD against NFE]({prefix}processes_mnist.png)", ""]


def reflow_mnist_section(d: dict, prefix: str) -> list[str]:
    """Teacher and reflowed student at 1, 2 and 4 Euler steps, the teacher's best at 20, and straightness."""
    out = [f"**Reflow on MNIST-5k** ({_machine(d)}; `benchmarks/reflow_mnist.py`: {d['pairs']} pairs from the "
           f"flow model of processes_mnist, {d['steps']} training steps, {d['reflow_min']:.1f} min with the pairs; FD "
           f"of {d['n']} samples, seed 0; straightness S {d['straightness']['teacher']:.4f} -> "
           f"{d['straightness']['reflow']:.4f}):", "", "| model | sampler | NFE | FD | precision | recall |",
           "|---|---|---:|---:|---:|---:|"]
    out += [f"| {r['name']} | {r['sampler']}{', ' + r['schedule'] if r['schedule'] else ''} | {r['nfe']} | "
            f"{r['fd']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} |" for r in d["rows"]]
    return out + ["", f"![teacher (top 3 rows) and reflow at 1, 2, 4 steps]({prefix}reflow_mnist.png)", ""]


def lsgm_mnist_section(d: dict, prefix: str) -> list[str]:
    """The bound in bits/dim and FD against NFE for the pixel, two-stage and joint (LSGM) models at equal minutes."""
    import lsgm_mnist as m
    nfes = sorted({r["nfe"] for r in d["rows"]})
    minutes = {r["name"]: r["train_min"] for r in d.get("trained", [])}
    out = [f"**LSGM, two-stage and pixel models on MNIST-5k at equal training minutes** ({_machine(d)}; "
           f"`benchmarks/lsgm_mnist.py`: {d['budget_min']:.2f} min each, the autoencoder's "
           f"{minutes.get('autoencoder', 0):.2f} counted against both latent rows; bound on {d['n_nll']} examples; FD "
           f"of {d['n']} samples by {d['sampler']}, seed 0):", "",
           "| model | minutes | bound (bits/dim) | " + " | ".join(f"FD, {k} NFE" for k in nfes) + " |",
           "|---|---:|---:|" + "---:|" * len(nfes)]
    for name in m.MODELS:
        b = d["bounds"].get(name, {})
        fds = {r["nfe"]: r["fd"] for r in d["rows"] if r["name"] == name}
        mins = minutes.get(name, 0) + (minutes.get("autoencoder", 0) if name != "pixel" else 0)
        out.append(f"| {name} | {mins:.2f} | {b.get('bound_bpd', float('nan')):.3f} +- "
                   f"{b.get('bound_ci95', float('nan')):.3f} | " + " | ".join(f"{fds[k]:.3f}" if k in fds else ""
                                                                           for k in nfes) + " |")
    return out + ["", f"![FD against NFE]({prefix}lsgm_nfe_fd.png)",
                  f"![samples at 20 NFE: pixel, two-stage, joint]({prefix}lsgm_mnist.png)", ""]


def sections(figure_prefix: str) -> list[str]:
    out = verdicts_section()
    for name, render in (("sampler_accuracy", lambda d: accuracy_section(d, figure_prefix)),
                         ("improved_ddpm", lambda d: improved_ddpm_section(d, figure_prefix)),
                         ("score_based", lambda d: score_based_section(d, figure_prefix)),
                         ("pc_corrector", pc_corrector_section),
                         ("score_pictures", lambda d: score_pictures_section(d, figure_prefix)),
                         ("guidance_tradeoff", lambda d: guidance_section(d, figure_prefix)),
                         ("guidance_tradeoff_sde", lambda d: guidance_section(d, figure_prefix)),
                         ("sampler_overhead", overhead_section), ("ddim_table", ddim_section),
                         ("ablation", ablation_section), ("default_schedules", default_schedules_section),
                         ("few_step", lambda d: few_step_section(d, figure_prefix)),
                         ("few_step_cuda", few_step_cuda_section),
                         ("processes_mnist", lambda d: processes_mnist_section(d, figure_prefix)),
                         ("reflow_mnist", lambda d: reflow_mnist_section(d, figure_prefix)),
                         ("lsgm_mnist", lambda d: lsgm_mnist_section(d, figure_prefix))):
        d = _load(name)
        if d:
            out += render(d)
    vs, nfe, sweep = _load("vs_ddpm_pytorch"), _load("quality_vs_nfe"), _load("architecture_sweep")
    if vs:
        out += vs_section(vs, figure_prefix)
    if sweep:
        out += sweep_section(sweep)
    if nfe:
        out += nfe_section(nfe, figure_prefix)
    before, after = _load("train_profile"), _load("train_profile_after")
    if before and after:
        out += profile_section(before, after)
    for name, title in (("train_throughput", "Training throughput, CPU"),
                        ("train_throughput_cuda", "Training throughput, GPU"),
                        ("train_throughput_cuda_bf16", "Training throughput, GPU, bf16")):
        d = _load(name)
        if d:
            out += throughput_section(d, title)
    return out


def main() -> int:
    page = ROOT / "docs" / "benchmarks.md"
    text = page.read_text()
    if START not in text or END not in text:
        print(f"{page} has no {START} ... {END} section", file=sys.stderr)
        return 1
    block = "\n".join([START, "", *sections("figures/"), END])
    page.write_text(text[:text.index(START)] + block + text[text.index(END) + len(END):])
    print(f"wrote the results section of {page.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
