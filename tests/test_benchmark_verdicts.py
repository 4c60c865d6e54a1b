"""Each benchmark's verdict can fail: its claims() judged on made-up results on both sides of the line, and an empty
selection is an error, never a pass (the scripts' exit codes are verdict(claims(...)))."""
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import common  # noqa: E402


def test_verdict_exit_code_follows_every_claim(capsys):
    assert common.verdict([("a", True), ("b", True)]) == 0
    assert common.verdict([("a", True), ("b", False)]) == 1
    out = capsys.readouterr().out
    assert "verdict: NOT met: b" in out and "verdict: met: a" in out
    with pytest.raises(ValueError, match="no claim"):
        common.verdict([])


def test_sampler_accuracy_counts_the_held_out_mixture_and_refuses_an_empty_selection():
    import sampler_accuracy as m
    summary = {"random": {"5": {"ratio": 0.7}, "50": {"ratio": 2.0}}, "random2": {"5": {"ratio": 0.9}}}
    judged = dict((text.split(":")[0], met) for text, met in m.claims(summary))
    assert judged == {"random": True, "random2": False}  # NFE 50 is outside the goal; the held-out one counts
    with pytest.raises(ValueError, match="NFE <= 20"):
        m.claims({"random": {"50": {"ratio": 0.1}}})


def test_default_schedules_picks_the_most_accurate_schedule_the_trained_model_allows():
    import default_schedules as m
    analytic = {"quadratic": 1.2, "logsnr": 1.5, "karras": 2.5, "uniform": float("inf")}
    fd = {"quadratic": 0.85, "logsnr": 0.73, "karras": 0.70, "uniform": 0.60}
    every = dict.fromkeys(analytic, True)
    assert m.pick(analytic, fd, 1.1, every) == "logsnr"     # quadratic is 1.21x the best FD; uniform has no mixture row
    assert m.pick(analytic, fd, 1.5, every) == "quadratic"
    assert m.pick(analytic, {**fd, "logsnr": 0.9}, 1.1, every) == "karras"
    assert m.pick(analytic, fd, 1.5, {**every, "quadratic": False}) == "logsnr"  # stops short of the smallest level
    with pytest.raises(ValueError, match="no schedule"):
        m.pick({"uniform": float("inf")}, {"uniform": 0.5}, 1.1, every)
    assert m.reaches_smallest_level(m.demo_process())["trailing"] is False
    assert m.reaches_smallest_level(m.demo_process())["karras"] is True
    result = {"slack": 1.1, "reaches_smallest_level": every,
              "solvers": {"unipc": {"analytic_worst_ratio": analytic, "fd": fd},
                          "deis": {"analytic_worst_ratio": analytic, "fd": fd}}}
    assert [met for _, met in m.claims(result, {"unipc": "karras", "deis": "logsnr"})] == [False, True]
    today = m.accuracy.current_defaults()  # judged by default with the registry's defaults of today
    mine = {s: (1.0 if s == today["unipc"] else 2.0) for s in analytic}
    result["solvers"] = {"unipc": {"analytic_worst_ratio": mine, "fd": dict.fromkeys(analytic, 0.7)}}
    assert [met for _, met in m.claims(result)] == [True]


def test_pc_corrector_calls_a_difference_only_beyond_two_standard_errors():
    import pc_corrector as m
    assert m.paired_call([0.0317, 0.0320, 0.0318], [0.0319, 0.0318, 0.0320])["call"] == "within noise"
    assert m.paired_call([0.030, 0.031, 0.029], [0.033, 0.0345, 0.032])["call"] == "better"
    assert m.paired_call([0.040, 0.041, 0.039], [0.033, 0.0345, 0.032])["call"] == "worse"
    row = {"process": "ve", "best_pc": "PC, snr 0.1", "best_pc_swd": 0.03, "predictor_swd": 0.033}
    rows = [{**row, "nfe": 20, "difference": 0.05, "se": 0.001, "call": "worse"},
            {**row, "nfe": 200, "difference": -0.003, "se": 0.001, "call": "better"}]
    assert [met for _, met in m.claims(rows)] == [True]  # judged at the largest budget only
    rows[1]["call"] = "within noise"
    assert [met for _, met in m.claims(rows)] == [False]


def test_vs_ddpm_pytorch_judges_the_intervals_upper_end():
    import vs_ddpm_pytorch as m
    mean, lo, hi = m.ratio_interval([0.09, 0.10, 0.11])
    assert mean == pytest.approx(0.10) and hi == pytest.approx(0.10 + 4.303 * 0.01 / 3**0.5)
    result = {"fd_ratio": mean, "fd_ratio_interval": [lo, hi], "required": 0.1, "nfe": 20, "seeds": [0, 1, 2]}
    assert [met for _, met in m.claims(result)] == [False]  # a mean at the goal is not enough
    result["fd_ratio_interval"] = [0.07, 0.095]
    assert [met for _, met in m.claims(result)] == [True]


def test_quality_vs_nfe_measures_which_samplers_are_stochastic_and_judges_at_20_nfe():
    import quality_vs_nfe as m
    assert m.is_stochastic("ddpm", {}) and m.is_stochastic("dpmpp_2m_sde", {}) and m.is_stochastic("ddim", {"eta": 1})
    assert not m.is_stochastic("ddim", {}) and not m.is_stochastic("dpmpp_2m", {})
    rows = [{"label": "a", "stochastic": False, "budget": 20, "fd": 1.2},
            {"label": "b", "stochastic": True, "budget": 20, "fd": 1.0},
            {"label": "c", "stochastic": False, "budget": 50, "fd": 0.5}]
    assert [met for _, met in m.claims(rows)] == [True]
    rows[0]["fd"] = 1.4
    assert [met for _, met in m.claims(rows)] == [False]  # the 50-NFE row does not rescue it
    with pytest.raises(ValueError, match="20 NFE"):
        m.claims(rows[1:])


def test_ddim_table_judges_the_papers_pattern_on_the_control():
    import ddim_table as m
    good = {"0.0|10": 1.0, "1.0|10": 1.5, "sigma_hat|10": 2.0, "0.0|100": 0.14, "1.0|100": 0.16, "sigma_hat|100": 0.13}
    assert [met for _, met in m.claims(good)] == [True, True]
    swapped = {**good, "0.0|10": 1.6, "1.0|10": 1.0}  # eta = 0 no longer best at few steps
    assert [met for _, met in m.claims(swapped)] == [False, True]
    apart = {**good, "1.0|100": 0.5}  # the rows do not close up
    assert [met for _, met in m.claims(apart)] == [True, False]


def test_improved_ddpm_claims_need_more_than_their_noise():
    import improved_ddpm as m
    rows = [{"objective": "simple", "variance": "beta_tilde", "bound_bpd": 2.8, "bound_ci95": 0.1, "fd_1000": 0.85},
            {"objective": "hybrid", "variance": "learned", "bound_bpd": 2.6, "bound_ci95": 0.1, "fd_1000": 0.8}]
    assert [met for _, met in m.likelihood_claims(rows, 1000)] == [True, True]
    rows[1].update(bound_bpd=2.75, fd_1000=1.2)  # within the interval; FD 1.4x
    assert [met for _, met in m.likelihood_claims(rows, 1000)] == [False, False]
    seeds = [{"objective": "simple", "variance": "beta_tilde", "mean": 0.9, "fd_50": [0.8, 1.0, 0.9]},
             {"objective": "hybrid", "variance": "learned", "mean": 0.8, "fd_50": [0.7, 0.9, 0.8]}]
    assert [met for _, met in m.few_steps_claim(seeds)] == [True]  # the same -0.1 on every seed
    seeds[1]["fd_50"] = [0.5, 1.1, 0.8]  # a mean difference of -0.1 whose spread over the seeds is 0.1
    assert [met for _, met in m.few_steps_claim(seeds)] == [False]


def test_score_based_and_score_pictures_claims():
    import score_based as sb
    import score_pictures as sp
    pair = {"pc": "PC", "alone": "alone", "difference": -0.3, "se": 0.1}
    assert [met for _, met in sb.claims([pair])] == [True]
    assert [met for _, met in sb.claims([{**pair, "se": 0.2}])] == [False]
    with pytest.raises(ValueError, match="no PC"):
        sb.claims([])
    true = sp.GMM.w.tolist()
    assert [met for _, met in sp.claims({"annealed": true, "plain": [0.25] * 4}, 2000)] == [True]
    assert [met for _, met in sp.claims({"annealed": true, "plain": true}, 2000)] == [False]


def test_ablation_judges_the_best_row_against_the_demo_row_for_each_kind_of_sampler():
    import ablation as m

    def row(name, sto, det):
        return {"variant": name, "samplers": [
            {"sampler": "a", "stochastic": True, "fd": [sto, sto], "fd_mean": sto},
            {"sampler": "b", "stochastic": False, "fd": [det, det], "fd_mean": det},
            {"sampler": "c", "stochastic": False, "fd": [0.01], "fd_mean": 0.01}]}  # one seed only: not counted
    result = {"rows": [row("demo", 0.5, 0.9), row("edm", 0.24, 0.5)]}
    assert [met for _, met in m.claims(result)] == [True, False]
    result["rows"][1] = row("edm", 0.3, 0.4)
    assert [met for _, met in m.claims(result)] == [False, True]
    with pytest.raises(ValueError, match="demo row"):
        m.claims({"rows": [row("edm", 0.3, 0.4)]})


def test_ode_gap_and_throughput_claims():
    import ode_gap as g
    import train_throughput as t
    rows = [{"label": "ode", "stochastic": False, "fd": 0.6}, {"label": "sde", "stochastic": True, "fd": 0.5}]
    assert [met for _, met in g.claims(rows)] == [True]
    rows[0]["fd"] = 0.7
    assert [met for _, met in g.claims(rows)] == [False]
    with pytest.raises(ValueError):
        g.claims(rows[:1])
    result = {"best": "batch 64", "best_speedup": 1.3, "goal": 2.0, "speedup": 5.0, "required": 3.0}
    assert [met for _, met in t.claims(result)] == [False, True]
    assert [met for _, met in t.claims({**result, "best_speedup": 2.1, "speedup": 2.9})] == [True, False]


def test_few_step_claims():
    """The issue's four goals against the teacher's best deterministic FD at 20 NFE (stochastic rows ignored); a row
    that is missing is not judged, and no teacher row at 20 NFE is an error."""
    import few_step as f

    def row(method, nfe, fd, stochastic=False):
        return {"method": method, "nfe": nfe, "fd": fd, "stochastic": stochastic, "label": method}
    rows = [row("teacher", 20, 1.0), row("teacher", 20, 0.5, True), row("progressive", 4, 1.2),
            row("progressive", 2, 1.7), row("consistency distillation", 2, 1.5), row("consistency distillation", 1, 3.1)]
    assert [met for _, met in f.claims(rows)] == [True, False, True, False]
    assert [met for _, met in f.claims(rows[:3])] == [True]
    with pytest.raises(ValueError, match="20 NFE"):
        f.claims(rows[1:])


def test_latent_cascade_claims():
    """The latent goal (3x faster at the same sampler, FD within 1.2x, each model at its better sampler) and the
    augmentation claim, each failing on the other side of its line; missing rows are not judged."""
    import latent_cascade as m

    def row(name, sampler, fd, s, u=None):
        return {"name": name, "sampler": sampler, "fd": fd, "s_per_image": s, "aug_level": u}
    timing = {"name": "timing", "sampler": "a", "nfe": 20, "s_per_image": {"pixel": 0.03, "latent": 0.009}}
    rows = [row("pixel", "a", 1.0, 0.03), row("pixel", "b", 0.9, 0.03), row("latent", "a", 1.05, 0.1),
            row("latent", "b", 1.2, 0.1), row("sr", "a", 2.0, 0.05, 0.1), row("sr-noaug", "a", 2.5, 0.05, 0.0),
            timing]
    assert [met for _, met in m.claims(rows)] == [True, True, True]  # 0.03 / 0.009 = 3.3x (timed); 1.05 <= 1.08
    slow = [{**r, "s_per_image": {"pixel": 0.03, "latent": 0.011}} if r["name"] == "timing" else r for r in rows]
    worse = [{**r, "fd": 1.1} if r["name"] == "latent" else r for r in rows]
    hurt = [{**r, "fd": 3.0} if r["name"] == "sr" else r for r in rows]
    assert [met for _, met in m.claims(slow)] == [False, True, True]
    assert [met for _, met in m.claims(worse)] == [True, False, True]
    assert [met for _, met in m.claims(hurt)] == [True, True, False]
    assert len(m.claims(rows[:4] + [timing])) == 2 and len(m.claims(rows[:4])) == 1 and not m.claims([])
    trained = [{"name": "pixel", "train_min": 4.0}, {"name": "autoencoder", "train_min": 1.0},
               {"name": "latent", "train_min": 3.3}, {"name": "base14", "train_min": 2.0},
               {"name": "sr", "train_min": 2.5}]
    judged = m.claims(rows, trained)[3:]  # latent 4.3 <= 4.4; cascade 4.5 > 4.4
    assert [met for _, met in judged] == [True, False] and "4.30 min" in judged[0][0]
    assert len(m.claims(rows, trained[:2])) == 3  # a row without its first stage's minutes is not judged


def test_flow_paths_claims():
    """Reflow's two claims, each failing on the other side of its line; nothing judged without both flows."""
    import flow_paths as m
    exact = {"flow": "exact (1-rectified)", "straightness": 0.25, "tv_1": 0.9}
    reflow = {"flow": "reflowed (2-rectified)", "straightness": 0.02, "tv_1": 0.03}
    assert [met for _, met in m.claims([exact, reflow])] == [True, True]
    assert [met for _, met in m.claims([exact, {**reflow, "straightness": 0.03}])] == [False, True]
    assert [met for _, met in m.claims([exact, {**reflow, "tv_1": 0.06}])] == [True, False]
    assert [met for _, met in m.claims([{**exact, "tv_1": 0.04}, reflow])] == [True, False]
    assert m.claims([exact]) == [] and m.claims([]) == []


def test_cld_paths_claims():
    """SSCS must beat EM twofold at each NFE up to 20: a 1.9x win fails; rows past 20 are not judged."""
    import cld_paths as m
    rows = [{"sampler": s, "steps": n, "swd": v} for n, a, b in ((5, 0.3, 20.0), (10, 0.25, 1.1), (20, 0.16, 0.35),
                                                                 (50, 0.08, 0.06)) for s, v in (("sscs", a),
                                                                                                 ("cld_em", b))]
    assert [met for _, met in m.claims(rows)] == [True, True, True]  # 2 x 0.16 = 0.32 <= 0.35
    rows[5]["swd"] = 0.30  # EM 0.30 against SSCS 0.16: a 1.9x win
    assert [met for _, met in m.claims(rows)] == [True, True, False]
    assert m.claims([r for r in rows if r["steps"] == 50]) == []


def test_processes_mnist_claims():
    """CLD against the VP SDE at 10 and 20 steps (each sampler's best), SSCS against EM up to 50, equal minutes."""
    import processes_mnist as m
    rows = []
    for steps, cld_fd, em_fd, vp_fd in ((10, 1.0, 2.0, 1.5), (20, 0.8, 0.9, 0.7), (50, 0.6, 0.5, 0.6),
                                        (100, 0.55, 0.5, 0.5)):
        rows += [{"name": "cld", "sampler": "sscs", "steps": steps, "fd": cld_fd},
                 {"name": "cld", "sampler": "cld_em", "steps": steps, "fd": em_fd},
                 {"name": "vp", "sampler": "unipc", "steps": steps, "fd": vp_fd},
                 {"name": "vp", "sampler": "dpmpp_2m_sde", "steps": steps, "fd": vp_fd + 0.1}]
    trained = [{"name": "ddpm", "train_min": 4.0}, {"name": "vp", "train_min": 4.3}, {"name": "cld", "train_min": 4.5}]
    judged = m.claims(rows, trained)
    assert [met for _, met in judged] == [True, False, True, True, False, True, False]
    assert "CLD FD 1.000 (sscs) against the VP SDE's 1.500 (unipc) at 10 steps" in judged[0][0]
    assert "(cld_em)" in m.claims([{**r, "fd": 0.1} if r["sampler"] == "cld_em" else r for r in rows])[1][0]


def test_reflow_mnist_claims():
    """Straightness, the student against the teacher at 1 and 2 Euler steps, and its 2-step FD within 2x of the
    teacher's best at 20 NFE; each fails on the other side of its line."""
    import reflow_mnist as m
    rows = [{"name": "teacher", "sampler": "euler", "steps": 1, "fd": 40.0},
            {"name": "teacher", "sampler": "euler", "steps": 2, "fd": 9.0},
            {"name": "reflow", "sampler": "euler", "steps": 1, "fd": 3.0},
            {"name": "reflow", "sampler": "euler", "steps": 2, "fd": 1.3},
            {"name": "teacher", "sampler": "dpmpp_2m", "steps": 20, "fd": 0.7},
            {"name": "teacher", "sampler": "unipc", "steps": 20, "fd": 0.6}]
    straight = {"teacher": 0.2, "reflow": 0.01}
    assert [met for _, met in m.claims(rows, straight)] == [True, True, True, False]  # 1.3 > 2 x 0.6
    assert "(unipc); goal 2x" in m.claims(rows, straight)[3][0]
    rows[3]["fd"] = 1.2
    assert [met for _, met in m.claims(rows, {"teacher": 0.2, "reflow": 0.3})] == [False, True, True, True]
    assert m.claims([], {}) == []


def test_few_step_level_tuning_is_greedy_and_leaves_room_below():
    """The greedy search picks the 2-step level first, then each next level below the last, from the candidates, and
    never picks a level with too few candidates below it for the levels still to place."""
    import few_step as f
    best = [1.4, 0.5, 0.2]
    seen = []

    def score(levels):  # lowest where each level is nearest its best
        seen.append(list(levels))
        return sum(abs(a - b) for a, b in zip(levels, best))
    assert f.tune_levels(score, None, 3) == best
    assert all(len(v) == 1 for v in seen[:len(f.LEVEL_CANDIDATES) - 2])  # the 2-step level first
    assert f.tune_levels(lambda lv: lv[-1], None, 3) == [0.3, 0.2, 0.1]  # the lowest with room for two below


def test_the_stored_results_are_judged_by_the_report():
    """The results page's verdict table (docs/benchmarks.md) comes from the stored JSON through each script's claims(): every stored result is
    judged (none predates its verdict) and each row names met or NOT met."""
    import report
    rows = [r for r in report.verdicts_section() if r.startswith("| ") and not r.startswith("| benchmark")]
    assert rows and not any("predates" in r for r in rows), rows
    assert all(r.endswith(("| met |", "| **NOT met** |")) for r in rows)
    stored = {p.stem for p in (BENCH / "results").glob("*.json")}
    assert {r.split(" | ")[0][2:] for r in rows} == stored & set(report.VERDICTS)
    assert json.loads((BENCH / "results" / "sampler_accuracy.json").read_text())["summary"]


@pytest.mark.parametrize("script,args,word", [
    ("sampler_accuracy.py", ["--nfe", "50"], "--nfe"), ("sampler_accuracy.py", ["--mixtures", "foo"], "--mixtures"),
    ("pc_corrector.py", ["--seeds", "1,2"], "--seeds"), ("pc_corrector.py", ["--seeds", "3"], "--seeds"),
    ("vs_ddpm_pytorch.py", ["--seeds", "1"], "--seeds"), ("quality_vs_nfe.py", ["--nfe", "10,50"], "--nfe"),
    ("train_profile.py", ["--steps", "0"], "--steps"), ("ablation.py", ["--seeds", "0,0"], "--seeds"),
    ("ablation.py", ["--only", "nope"], "--only"), ("ablation.py", ["--ema-curve", "nope"], "--ema-curve"),
    ("ode_gap.py", ["--run", "nowhere"], "--run"), ("train_throughput.py", ["--goal", "0"], "--goal"),
    ("train_throughput.py", ["--device", "tpu"], "--device"), ("train_throughput.py", ["--batch", "0"], "--batch"),
    ("ablation.py", ["--n", "1"], "--n"), ("ablation.py", ["--steps", "0"], "--steps"),
    ("ode_gap.py", ["--n", "1"], "--n"), ("bf16_loss.py", ["--seeds", "1"], "--seeds"),
    ("bf16_loss.py", ["--steps", "10"], "--steps"), ("vs_ddpm_pytorch.py", ["--sampler", "nope"], "--sampler"),
    ("vs_ddpm_pytorch.py", ["--spacing", "nope"], "--spacing"), ("sampler_accuracy.py", ["--n", "1"], "--n"),
    ("default_schedules.py", ["--n", "1"], "--n"), ("default_schedules.py", ["--nfe", "1"], "--nfe"),
    ("default_schedules.py", ["--slack", "0.5"], "--slack"), ("default_schedules.py", ["--run", "nowhere"], "--run"),
    ("few_step.py", ["--n", "1"], "--n"), ("few_step.py", ["--stage-steps", "0"], "--stage-steps"),
    ("few_step.py", ["--seeds", "0,x"], "argument --seeds"), ("few_step.py", ["--seeds", "1,1"], "argument --seeds"),
    ("few_step.py", ["--tune-seed", "1"], "--tune-seed"), ("trilemma.py", ["--seeds", "0,0"], "argument --seeds"),
    ("trilemma.py", ["--n", "1"], "--n"), ("trilemma.py", ["--only", "nope"], "--only"),
    ("latent_cascade.py", ["--n", "1"], "--n"), ("latent_cascade.py", ["--aug-max", "0"], "--aug-max"),
    ("latent_cascade.py", ["--aug-levels", "0,1.5"], "--aug-levels"),
    ("latent_cascade.py", ["--aug-levels", "a"], "--aug-levels"),
    ("latent_cascade.py", ["--ae-steps", "0"], "--ae-steps"),
    ("flow_paths.py", ["--pairs", "0"], "--pairs"), ("flow_paths.py", ["--steps", "-1"], "--steps"),
    ("flow_paths.py", ["--n", "0"], "--n"), ("cld_paths.py", ["--n", "1"], "--n"),
    ("cld_paths.py", ["--paths", "0"], "--paths"), ("processes_mnist.py", ["--n", "1"], "--n"),
    ("processes_mnist.py", ["--nfe", "1,10"], "--nfe"), ("processes_mnist.py", ["--nfe", "a"], "--nfe"),
    ("reflow_mnist.py", ["--pairs", "8"], "--pairs"), ("reflow_mnist.py", ["--steps", "0"], "--steps"),
    ("reflow_mnist.py", ["--n", "2"], "--n"), ("text_mnist.py", ["--steps", "0"], "--steps"),
    ("text_mnist.py", ["--weights", "a"], "--weights"), ("text_mnist.py", ["--clip-scales", "x"], "--weights"),
    ("text_mnist.py", ["--per-prompt", "0"], "--per-prompt"), ("text_mnist.py", ["--n", "2"], "--n"),
    ("text_mnist.py", ["--clip-steps", "0"], "--clip-steps"), ("imagen_mnist.py", ["--steps", "0"], "--steps"),
    ("imagen_mnist.py", ["--weights", "a"], "--weights"), ("imagen_mnist.py", ["--per-prompt", "0"], "--per-prompt"),
    ("imagen_mnist.py", ["--n", "2"], "--n"), ("unclip_mnist.py", ["--prior-steps", "0"], "--prior-steps"),
    ("unclip_mnist.py", ["--decoder-steps", "0"], "--decoder-steps"), ("unclip_mnist.py", ["--weights", "a"],
                                                                        "--weights"),
    ("unclip_mnist.py", ["--n-var", "0"], "--n-var"), ("unclip_mnist.py", ["--n", "2"], "--n")])
def test_bad_benchmark_flags_are_one_line_before_any_work(script, args, word, tmp_path):
    """A benchmark's new flags refuse bad values in one line naming the flag (argparse's exit 2), before training,
    sampling or writing anything."""
    import subprocess
    results = sorted((BENCH / "results").iterdir())
    stamps = [p.stat().st_mtime for p in results]
    done = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"{script}: error: {word}")
    assert [p.stat().st_mtime for p in sorted((BENCH / "results").iterdir())] == stamps


def test_lsgm_mnist_claims():
    """The joint bound below the two-stage one beyond both intervals, the joint FD within 1.2x of the two-stage's, 2x
    fewer NFE than the pixel model for the same distance (log-linear between grid points), equal minutes; each fails
    on the other side of its line, and missing rows are not judged."""
    import lsgm_mnist as m
    curves = {"pixel": [(5, 3.0), (10, 1.0), (20, 0.6), (50, 0.5)], "two-stage": [(5, 1.0), (10, 0.7), (20, 0.6),
                                                                                  (50, 0.6)],
              "joint": [(5, 1.2), (10, 0.7), (20, 0.65), (50, 0.7)]}
    rows = [{"name": k, "nfe": n, "fd": f} for k, c in curves.items() for n, f in c]
    bounds = {"joint": {"bound_bpd": 1.5, "bound_ci95": 0.02}, "two-stage": {"bound_bpd": 2.0, "bound_ci95": 0.02}}
    trained = [{"name": "pixel", "train_min": 5.0}, {"name": "autoencoder", "train_min": 1.5},
               {"name": "two-stage", "train_min": 3.5}, {"name": "joint", "train_min": 3.9}]
    # target max(0.65, 0.5) = 0.65: pixel between 10 (1.0) and 20 (0.6) at log-fraction 0.875 -> 18.3; joint at 20
    assert m.nfe_to_reach(curves["pixel"], 0.65) == pytest.approx(10 * 2 ** 0.875)
    assert m.nfe_to_reach(curves["pixel"], 0.1) is None and m.nfe_to_reach(curves["pixel"], 5.0) == 5
    assert [met for _, met in m.claims(rows, bounds, trained)] == [True, True, False, True, True]  # 0.92x, 1.08x
    fast = [{**r, "fd": 0.6} if r["name"] == "joint" and r["nfe"] == 5 else r for r in rows]  # 0.6 at 5 NFE
    assert [met for _, met in m.claims(fast, bounds)] == [True, True, True]  # pixel 20 / joint <= 5: 4x
    close = {**bounds, "joint": {"bound_bpd": 1.97, "bound_ci95": 0.02}}  # within the intervals: not shown lower
    worse = [{**r, "fd": r["fd"] * 1.2} if r["name"] == "joint" else r for r in rows]  # 0.78 = 1.3x 0.6
    assert [met for _, met in m.claims(rows, close)][0] is False
    assert [met for _, met in m.claims(worse, bounds)][1] is False
    assert [met for _, met in m.claims(rows, {}, [*trained[:3], {"name": "joint", "train_min": 4.2}])] == \
        [True, False, True, False]  # 1.5 + 4.2 = 5.7 > 5.5
    assert m.claims([], {}) == []


def test_gpu_sampling_claims():
    """Our sampling within 1.1x of the forward x NFE and 1.05x of diffusers' pipeline, each failing past its line."""
    import gpu as m
    row = {"nfe": 10, "forward_x_nfe_s": 1.0, "ours_s": 1.05, "diffusers_s": 1.02, "ours_vs_limit": 1.05,
           "ours_vs_diffusers": 1.05 / 1.02}
    assert [met for _, met in m.claims([row])] == [True, True]
    assert [met for _, met in m.claims([{**row, "ours_vs_limit": 1.12}])] == [False, True]
    assert [met for _, met in m.claims([{**row, "ours_vs_diffusers": 1.06}])] == [True, False]
    assert m.claims([]) == []


def test_streaming_memory_claims():
    """The streamed run under the baseline + cap, the in-memory one over it; each fails on the other side."""
    import streaming_memory as m
    rows = {"baseline": {"peak_rss_mb": 300.0}, "stream": {"peak_rss_mb": 340.0}, "memory": {"peak_rss_mb": 520.0}}
    assert [met for _, met in m.claims(rows, 64)] == [True, True]
    assert [met for _, met in m.claims({**rows, "stream": {"peak_rss_mb": 370.0}}, 64)] == [False, True]
    assert [met for _, met in m.claims({**rows, "memory": {"peak_rss_mb": 360.0}}, 64)] == [True, False]


def test_text_image_claims():
    """text_mnist: the goal at the best w <= 3 (digit >= 0.97, each attribute >= 0.85); imagen_mnist: dynamic against
    none and static at w >= 5; unclip_mnist: variations keep the digit, prior + decoder near the direct model. Each
    fails on the other side of its line."""
    import imagen_mnist
    import text_mnist
    import unclip_mnist
    row = {"w": 1.0, "digit": 0.98, "thickness": 0.9, "slant": 0.9, "size": 0.86}
    assert [met for _, met in text_mnist.fidelity_claims([row])] == [True]
    assert [met for _, met in text_mnist.fidelity_claims([{**row, "size": 0.84}])] == [False]
    assert text_mnist.fidelity_claims([{**row, "w": 5.0}]) == []
    base = {"w": 5.0, "data_at_ceiling": 0.02}
    rows = [{**base, "mode": "none", "out_of_range": 0.5, "at_ceiling": 0.05, "digit": 1.0},
            {**base, "mode": "static", "out_of_range": 0.0, "at_ceiling": 0.01, "digit": 1.0},
            {**base, "mode": "dynamic", "out_of_range": 0.0, "at_ceiling": 0.0, "digit": 0.9}]
    assert [met for _, met in imagen_mnist.claims(rows)] == [True, True, False]
    rows[2]["digit"] = 1.0
    assert [met for _, met in imagen_mnist.claims(rows)] == [True, True, True]
    var = {"digit": 0.95}
    rows = [{"model": "unclip", "digit": 0.93}, {"model": "direct", "digit": 1.0}]
    assert [met for _, met in unclip_mnist.claims(var, rows)] == [True, False]
    assert [met for _, met in unclip_mnist.claims({"digit": 0.8}, [{**rows[0], "digit": 0.96}, rows[1]])] == \
        [False, True]
