"""The README's Python examples run as written (a plain-function model with every kind of schedule, guidance, the
bound and the ODE likelihood)."""
import re
from pathlib import Path


def run_example(heading: str) -> dict:
    """Execute the first Python block under `heading` in README.md; returns its namespace."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text.split(heading, 1)[1], re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    return namespace


def test_readme_sampling_example_runs(capsys):
    x = run_example("### Sampling: one entry point, any model")["x"]
    assert x.shape == (1000, 2) and bool(x.isfinite().all())
    assert "unipc" in capsys.readouterr().out


def test_readme_guidance_example_runs():
    x = run_example("### Guidance: Bayes' rule on scores")["x"]
    assert x.shape == (600, 2) and x.abs().max() <= 1 + 1e-6


def test_readme_likelihood_example_runs():
    ns = run_example("### Improved DDPM and likelihoods")
    gap = float(ns["bound"].total.mean() - ns["true_nll"].mean())
    assert 0 < gap < 0.4, gap
