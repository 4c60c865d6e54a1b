"""The command line end to end on a tiny run: train, resume, sample (PNG, GIF, strip, npz), info, errors."""
import json

import numpy as np
import yaml
from PIL import Image

from denoisekit.cli import main


def test_train_sample_info(tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"data": "digits", "prediction": "edm", "loss": {"t_sampling": "lognormal"},
                                   "net": {"channels": 8, "channel_mult": [1, 2]},
                                   "train": {"steps": 4, "batch_size": 8, "progress": False, "checkpoint_every": 2,
                                             "sample_every": 2, "log_every": 2},
                                   "sample": {"steps": 3, "n": 4}}))
    run = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--out", str(run), "--set", "train.lr=1e-3"]) == 0
    for f in ("run.yaml", "forward_process.png", "metrics.csv", "samples/step-0000002.png",
              "samples/step-0000004.png", "checkpoints/latest"):
        assert (run / f).exists(), f
    assert [r.split(",")[0] for r in (run / "metrics.csv").read_text().splitlines()] == ["step", "2", "4"]
    try:
        import tensorboard  # noqa: F401  (an optional extra: scalars go to TensorBoard when it is installed)
        assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    except ImportError:
        pass
    assert yaml.safe_load((run / "run.yaml").read_text())["train"]["lr"] == 1e-3
    # resuming a finished run trains no further steps: no new checkpoint, the log unchanged
    checkpoints, log = sorted(p.name for p in (run / "checkpoints").iterdir()), (run / "metrics.csv").read_bytes()
    capsys.readouterr()
    assert main(["train", "--config", str(cfg), "--out", str(run), "--set", "train.lr=1e-3"]) == 0
    assert "resuming" in capsys.readouterr().out
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == checkpoints
    assert (run / "metrics.csv").read_bytes() == log
    # and asked for more steps, it continues from the last checkpoint
    assert main(["train", "--config", str(cfg), "--out", str(run), "--steps", "6"]) == 0
    assert "resuming" in capsys.readouterr().out and (run / "checkpoints" / "step-0000006").exists()

    out = tmp_path / "s.png"
    assert main(["sample", str(run), "--n", "6", "--steps", "5", "--out", str(out), "--gif", str(tmp_path / "r.gif"),
                 "--strip", str(tmp_path / "r.png"), "--npz", str(tmp_path / "s.npz"), "--seed", "3"]) == 0
    with Image.open(out) as grid, Image.open(tmp_path / "r.gif") as gif:
        assert grid.size[0] > 16 and gif.n_frames >= 2
    x = np.load(tmp_path / "s.npz")["x"]
    assert x.shape == (6, 1, 8, 8)
    assert main(["sample", str(run), "--n", "2", "--steps", "5", "--out", str(tmp_path / "t.png"),
                 "--npz", str(tmp_path / "t.npz"), "--seed", "3"]) == 0
    # same seed, same samples whatever n (up to float rounding: convolutions may sum in another order)
    assert np.allclose(np.load(tmp_path / "t.npz")["x"], x[:2], atol=1e-4)
    assert main(["sample", str(run), "--n", "6", "--steps", "5", "--out", str(out), "--npz", str(tmp_path / "u.npz"),
                 "--seed", "3"]) == 0
    assert np.array_equal(np.load(tmp_path / "u.npz")["x"], x)  # and bitwise for the same n

    capsys.readouterr()
    assert main(["info", str(run)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["step"] == 6 and info["prediction"] == "edm" and info["has_ema"] and info["parameters"] > 1000


def test_errors_are_one_line(tmp_path, capsys):
    assert main(["sample", str(tmp_path)]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert main(["train", "--data", "nope", "--out", str(tmp_path / "r")]) == 2
    assert "neither a built-in" in capsys.readouterr().err
    assert main(["train", "--data", "moons", "--set", "colour=red", "--out", str(tmp_path / "r")]) == 2
    assert "unknown key 'colour'" in capsys.readouterr().err
    assert main(["train", "--set", "nokey"]) == 2
    assert "--set: expected KEY=VALUE" in capsys.readouterr().err
