"""The README's sampling example runs as written (a plain-function model with every kind of schedule)."""
import re
from pathlib import Path


def test_readme_sampling_example_runs(capsys):
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("### Sampling: one entry point, any model", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    x = namespace["x"]
    assert x.shape == (1000, 2) and bool(x.isfinite().all())
    assert "unipc" in capsys.readouterr().out


def test_readme_guidance_example_runs():
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("### Guidance: Bayes' rule on scores", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["x"].shape == (600, 2) and namespace["x"].abs().max() <= 1 + 1e-6
