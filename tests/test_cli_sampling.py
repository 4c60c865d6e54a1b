"""The sampling flags and the DDIM commands (invert, interpolate) through the CLI, with their bad inputs."""
import numpy as np
import pytest
import yaml
from PIL import Image

from denoisekit.cli import main
from denoisekit.data import load_dataset
from denoisekit.images import to_uint8


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny digits model (a few steps: the plumbing is under test, not the quality)."""
    root = tmp_path_factory.mktemp("cli")
    out = root / "run"
    assert main(["train", "--data", "digits", "--out", str(out), "--steps", "2", "--batch-size", "8",
                 "--set", "net.channels=8", "--set", "net.channel_mult=[1, 2]", "--set", "train.progress=false",
                 "--set", "train.checkpoint_every=2", "--set", "train.sample_every=0"]) == 0
    return out


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Two digits as PNG files."""
    root = tmp_path_factory.mktemp("img")
    x = load_dataset("digits").x[:2]
    paths = []
    for i, im in enumerate(to_uint8(x)):
        p = root / f"d{i}.png"
        Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im).save(p)
        paths.append(str(p))
    return paths


def one_line_error(capsys, *words):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err


@pytest.mark.parametrize("flags", [["--sampler", "dpmpp_2m", "--schedule", "karras"],
                                   ["--sampler", "ddim", "--eta", "0.5"], ["--sampler", "ddim", "--eta", "sigma_hat"],
                                   ["--sampler", "heun", "--churn", "5"], ["--sampler", "unipc", "--opt", "order=2"],
                                   ["--sampler", "ddpm", "--variance", "beta", "--schedule", "trailing"]])
def test_sample_with_any_sampler(run, tmp_path, capsys, flags):
    assert main(["sample", str(run), "--n", "3", "--steps", "6", "--out", str(tmp_path / "s.png"),
                 "--npz", str(tmp_path / "s.npz"), *flags]) == 0
    assert "network evaluations" in capsys.readouterr().out
    x = np.load(tmp_path / "s.npz")["x"]
    assert x.shape == (3, 1, 8, 8) and np.isfinite(x).all()


def test_sample_with_auto_schedule_reads_the_checkpoints_cache(run, tmp_path, capsys):
    """--schedule auto takes the schedule fitted for this checkpoint from auto_schedules.json beside its weights
    (fitted here cheaply through the API; the fit itself is tested in test_auto_schedule)."""
    import json

    from denoisekit.models import load_denoiser
    from denoisekit.samplers.auto import _key
    from denoisekit.samplers import sampling_times
    from denoisekit.train import find_checkpoint
    denoiser, _ = load_denoiser(run)
    cache = find_checkpoint(run) / "auto_schedules.json"
    times = sampling_times(denoiser.process, 5, "logsnr")  # stands in for a fitted schedule (not dpmpp_3m's karras)
    cache.write_text(json.dumps({_key(denoiser, "dpmpp_3m", 5, (1, 8, 8), {}, 64, 6, 0): times.tolist()}))
    assert main(["sample", str(run), "--n", "2", "--steps", "5", "--sampler", "dpmpp_3m", "--schedule", "auto",
                 "--out", str(tmp_path / "a.png"), "--npz", str(tmp_path / "a.npz")]) == 0
    assert "automatic 5-step schedule" in capsys.readouterr().out
    assert list(json.loads(cache.read_text()).values()) == [times.tolist()]  # read, not refitted
    # and used: the samples are those of the cached times
    from denoisekit.samplers import generate
    expected = generate(denoiser, 2, (1, 8, 8), seed=0, steps=5, sampler="dpmpp_3m", times=times)
    assert np.array_equal(np.load(tmp_path / "a.npz")["x"], expected.numpy())


def test_invert_and_interpolate(run, images, tmp_path, capsys):
    assert main(["invert", str(run), *images, "--steps", "20", "--out", str(tmp_path / "z.npz"),
                 "--reconstruction", str(tmp_path / "rec.png")]) == 0
    out = capsys.readouterr().out
    z = np.load(tmp_path / "z.npz")["x_T"]
    assert z.shape == (2, 1, 8, 8) and np.isfinite(z).all() and "relative error" in out
    with Image.open(tmp_path / "rec.png") as im:
        assert im.size[1] > im.size[0] / 2  # two rows
    assert main(["interpolate", str(run), *images, "--frames", "4", "--steps", "10",
                 "--out", str(tmp_path / "i.png")]) == 0
    with Image.open(tmp_path / "i.png") as im:
        assert im.size[0] > 4 * 8


@pytest.mark.parametrize("argv,words", [
    (["--sampler", "nope"], ["sampler: expected one of"]),
    (["--schedule", "nope"], ["--schedule: expected one of"]),
    (["--steps", "0"], ["--steps: expected a positive"]),
    (["--opt", "order"], ["--opt: expected KEY=VALUE"]),
    (["--sampler", "dpmpp_2m", "--opt", "order=2"], ["sampler 'dpmpp_2m': unknown option 'order'"]),
    (["--sampler", "ddpm", "--eta", "0.5"], ["sampler 'ddpm': unknown option 'eta'; it takes variance"]),
    (["--sampler", "ddim", "--eta", "2"], ["eta: expected a number in [0, 1]"]),
    (["--sampler", "euler", "--churn", "-1"], ["s_churn: expected a non-negative number"]),
    (["--sampler", "ddpm", "--schedule", "auto"], ["schedule 'auto': fits deterministic ODE solvers"]),
    (["--cuda-graphs"], ["--cuda-graphs: records GPU kernels; it needs --device cuda, got --device cpu"]),
])
def test_sample_bad_input(run, tmp_path, capsys, argv, words):
    assert main(["sample", str(run), "--n", "2", "--out", str(tmp_path / "s.png"), *argv]) == 2
    one_line_error(capsys, *words)
    assert not (tmp_path / "s.png").exists()


def test_eval_checks_sampling_flags_before_work(run, tmp_path, capsys):
    assert main(["eval", str(run), "--sampler", "ddim", "--opt", "variance=beta"]) == 2
    one_line_error(capsys, "sampler 'ddim': unknown option 'variance'")


@pytest.mark.parametrize("command,argv,words", [
    ("invert", ["--iters", "0"], ["--iters: expected a positive"]),
    ("invert", ["--steps", "0"], ["--steps: expected a positive"]),
    ("invert", ["--out", "FOLDER"], ["--out:", "is a folder"]),
    ("invert", ["--reconstruction", "FOLDER"], ["--reconstruction:", "is a folder"]),
    ("interpolate", ["--frames", "1"], ["--frames: expected at least 2"]),
    ("interpolate", ["--out", "FOLDER"], ["--out:", "is a folder"]),
])
def test_ddim_commands_bad_input(run, images, tmp_path, capsys, command, argv, words):
    argv = [str(tmp_path) if a == "FOLDER" else a for a in argv]
    files = images if command == "invert" else images[:2]
    assert main([command, str(run), *files, *argv]) == 2
    one_line_error(capsys, *words)


def test_ddim_commands_missing_or_wrong_files(run, images, tmp_path, capsys):
    assert main(["invert", str(run), str(tmp_path / "none.png")]) == 2
    one_line_error(capsys, "image: no such file")
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    assert main(["interpolate", str(run), images[0], str(bad)]) == 2
    one_line_error(capsys, "cannot read image")
    toy = tmp_path / "toy"
    assert main(["train", "--data", "moons", "--out", str(toy), "--steps", "1", "--set", "train.progress=false",
                 "--set", "train.checkpoint_every=1", "--set", "train.sample_every=0"]) == 0
    capsys.readouterr()
    assert main(["invert", str(toy), images[0]]) == 2
    one_line_error(capsys, "is not an image model")


@pytest.mark.parametrize("section,words", [
    ({"sampler": "nope"}, ["sampler: expected one of"]),
    ({"steps": 0}, ["sample.steps: expected a positive integer"]),
    ({"steps": 10.7}, ["sample.steps: expected a positive integer"]),
    ({"schedule": "nope"}, ["sample.schedule: expected one of"]),
    ({"options": {"eta": 0.5}}, ["sampler 'ddpm': unknown option 'eta'"]),
    ({"options": "fast"}, ["sample.options: expected a mapping"]),
    ({"variance": "beta"}, ["sample: unknown keys ['variance']"]),
    ({"schedule": "auto"}, ["schedule 'auto': fits deterministic ODE solvers"]),
])
def test_run_config_sampling_is_checked_before_training(tmp_path, capsys, section, words):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"data": "moons", "sample": section}))
    out = tmp_path / "r"
    assert main(["train", "--config", str(cfg), "--out", str(out)]) == 2
    one_line_error(capsys, *words)
    assert not out.exists()


def test_sample_uses_the_best_recorded_sampler(tmp_path, capsys):
    """`eval --record` stores each sampler's score in the checkpoint; `sample` with no sampler flags takes the best
    one (said on one line); before any record, ddpm for 100 steps; a damaged record is one line; bad --record."""
    import json
    run = tmp_path / "moons"
    assert main(["train", "--data", "moons", "--out", str(run), "--steps", "30", "--batch-size", "64",
                 "--set", "train.progress=false", "--set", "train.sample_every=0"]) == 0
    capsys.readouterr()
    assert main(["sample", str(run), "--n", "8", "--out", str(tmp_path / "a.png")]) == 0
    assert "sampler ddpm: 100 network evaluations" in capsys.readouterr().out
    for argv in (["--sampler", "ddpm", "--steps", "4"], ["--sampler", "dpmpp_2m", "--steps", "8"],
                 ["--sampler", "euler", "--steps", "3", "--schedule", "uniform"]):
        assert main(["eval", str(run), "--n", "300", "--record", *argv]) == 0
    assert capsys.readouterr().out.count("recorded:") == 3
    folder = sorted((run / "checkpoints").glob("step-*"))[-1]
    entries = json.loads((folder / "sampler_scores.json").read_text())
    assert [e["metric"] for e in entries] == ["swd"] * 3
    best = min(entries, key=lambda e: e["score"])
    assert main(["sample", str(run), "--n", "8", "--out", str(tmp_path / "b.png")]) == 0
    out = capsys.readouterr().out
    assert f"sampler: {best['sampler']}, {best['steps']} steps" in out and "best recorded" in out
    assert f"sampler {best['sampler']}: {best['steps']} network evaluations" in out
    # the same request recorded again replaces its entry
    assert main(["eval", str(run), "--n", "300", "--record", "--sampler", "ddpm", "--steps", "4"]) == 0
    assert len(json.loads((folder / "sampler_scores.json").read_text())) == 3
    # naming a sampler ignores the record; a damaged record is one line only when it is read
    (folder / "sampler_scores.json").write_text('[{"sampler": "nope"}]')
    capsys.readouterr()
    assert main(["sample", str(run), "--n", "2", "--steps", "3", "--out", str(tmp_path / "c.png")]) == 0
    capsys.readouterr()
    assert main(["sample", str(run), "--n", "2", "--out", str(tmp_path / "d.png")]) == 2
    one_line_error(capsys, "sampler_scores.json is damaged", "an entry has no 'schedule'", "--sampler")
    np.savez(tmp_path / "s.npz", x=np.zeros((10, 2), dtype=np.float32))
    assert main(["eval", str(tmp_path / "s.npz"), "--data", "moons", "--record"]) == 2
    one_line_error(capsys, "--record", "checkpoint")
    assert main(["eval", str(run), "--raw", "--record", "--sampler", "ddpm"]) == 2
    one_line_error(capsys, "--record", "--raw")
