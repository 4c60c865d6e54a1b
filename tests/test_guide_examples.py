"""The guide's Python examples (docs/guide/python.md) run as written (a plain-function model with every kind of
schedule, guidance, the bound and the ODE likelihood)."""
import re
from pathlib import Path


def run_example(heading: str) -> dict:
    """Execute the first Python block under `heading` in the guide; returns its namespace."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "guide" / "python.md").read_text()
    code = re.search(r"```python\n(.*?)```", text.split(heading, 1)[1], re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "docs/guide/python.md", "exec"), namespace)
    return namespace


def test_guide_sampling_example_runs(capsys):
    x = run_example("## Sampling: one entry point, any model")["x"]
    assert x.shape == (1000, 2) and bool(x.isfinite().all())
    assert "unipc" in capsys.readouterr().out


def test_guide_guidance_example_runs():
    x = run_example("## Guidance: Bayes' rule on scores")["x"]
    assert x.shape == (600, 2) and x.abs().max() <= 1 + 1e-6


def test_guide_likelihood_example_runs():
    ns = run_example("## Improved DDPM and likelihoods")
    gap = float(ns["bound"].total.mean() - ns["true_nll"].mean())
    assert 0 < gap < 0.4, gap


def test_guide_score_matching_example_runs():
    """DSM over NCSN's ladder and annealed Langevin: samples on the mixture, in both modes."""
    ns = run_example("## Score-based models: score matching, Langevin dynamics, score SDEs")
    x, gmm = ns["x"], ns["gmm"]
    assert x.shape == (1000, 2) and bool(x.isfinite().all())
    assert 0.2 < float((x[:, 0] < 0).float().mean()) < 0.45  # weight 0.3 (annealed Langevin leans toward uniform)
    # within 1.5 nats of the data's mean log-density (500 training steps; the prior draws are about 70 below)
    assert float(gmm.log_density(x.double()).mean()) > float(gmm.log_density(gmm.sample(1000)[0]).mean()) - 1.5
    assert float(gmm.log_density(ns["x_T"].double()).mean()) < -5  # the prior draws were far off


def test_guide_consistency_example_runs():
    ns = run_example("## Few-step generation: progressive distillation, consistency models, zero-shot editing")
    x = ns["x"]
    assert x.shape == (1000, 2) and bool(x.isfinite().all())
    assert ns["student"].consistency and ns["loss"].target.model is not None
