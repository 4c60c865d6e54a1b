"""Reliability (issue 9), driven through the CLI as a user drives it: every bad input is one line on stderr naming the
argument or file, before any work, leaving the run folder as it was; no checkpoint file runs code; runs are
reproducible; NaN is caught; run folders survive kills, damage and Ctrl-C."""
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from denoisekit.cli import main
from denoisekit.train.checkpoint import load_state

TINY = ["--set", "train.progress=false", "--set", "train.tensorboard=false", "--set", "net.hidden=32",
        "--set", "net.depth=1", "--set", "train.batch_size=16", "--set", "sample.steps=3"]


def train(run, *extra, steps=4, data="moons"):
    return main(["train", "--data", str(data), "--out", str(run), "--steps", str(steps), *TINY,
                 "--set", "train.checkpoint_every=2", "--set", "train.log_every=1", *extra])


def snapshot(folder: Path) -> dict:
    """Every file under `folder` with its content hash: equal snapshots mean nothing was written or removed."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def messages(text: str) -> list[str]:
    """stderr as a user reads it: progress bars (redrawn in place with carriage returns) left out."""
    lines = text.replace("\r", "\n").splitlines()
    return [x.strip() for x in lines if x.strip() and not re.search(r"\d+%\|", x)]


def one_line_error(capsys, *fragments) -> str:
    lines = messages(capsys.readouterr().err)
    assert len(lines) == 1, lines
    err = lines[0]
    assert "error:" in err and "internal error" not in err and "Traceback" not in err, err
    for f in fragments:
        assert f in err, (f, err)
    return err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished tiny run (checkpoints at steps 2 and 4), copied fresh for each test that changes it."""
    run = tmp_path_factory.mktemp("trained") / "run"
    assert train(run) == 0
    return run


@pytest.fixture
def run_copy(trained, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(trained, dst)
    return dst


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A tiny class-conditional image model."""
    run = tmp_path_factory.mktemp("digits") / "run"
    assert main(["train", "--data", "digits", "--out", str(run), "--steps", "2", "--set", "class_cond=true",
                 "--set", "net.channels=8", "--set", "net.channel_mult=[1]", "--set", "train.progress=false",
                 "--set", "train.tensorboard=false", "--set", "train.batch_size=8", "--set", "sample.steps=2",
                 "--set", "sample.n=4"]) == 0
    return run


# ---- 1. a checkpoint someone hands you cannot run code ----------------------------------------------------------
class Planted:
    """A pickle payload: unpickling it would create the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("name", ["state.pt", "model.safetensors", "ema.safetensors", "config.json"])
def test_a_planted_pickle_in_any_checkpoint_file_never_executes(run_copy, tmp_path, capsys, name):
    folder = run_copy / "checkpoints" / "step-0000004"
    marker = tmp_path / "pwned"
    torch.save({"step": 4, "payload": Planted(marker)}, folder / name)  # a pickle that runs a command when loaded
    capsys.readouterr()
    assert main(["info", str(run_copy)]) == 2
    one_line_error(capsys, name)
    if name != "state.pt":
        raw = ["--raw"] if name == "model.safetensors" else []  # sample reads the EMA weights unless --raw
        assert main(["sample", str(run_copy), "--n", "2", "--steps", "2", "--out", str(tmp_path / "s.png"), *raw]) == 2
        one_line_error(capsys, name)
    # resuming falls back to the previous, good checkpoint and never unpickles the planted file
    assert train(run_copy, steps=5) == 0
    assert "step-0000004 is unusable" in capsys.readouterr().out
    assert not marker.exists()


def test_state_files_hold_only_tensors_and_plain_values(run_copy):
    """A fresh checkpoint's state loads with weights_only=True and nothing allowed beyond it; one written before
    the numpy RNG state became tensors (a numpy array inside) still loads."""
    folder = run_copy / "checkpoints" / "step-0000002"
    state = torch.load(folder / "state.pt", weights_only=True)
    assert state["step"] == 2 and isinstance(state["numpy_rng"]["keys"], torch.Tensor)
    torch.save({**state, "numpy_rng": np.random.get_state()}, folder / "state.pt")
    assert isinstance(load_state(folder)["numpy_rng"], tuple)


# ---- 2. same config and seed, same weights ------------------------------------------------------------------
def test_fresh_cli_runs_with_the_same_seed_are_bitwise_equal(tmp_path):
    a, b, c = (tmp_path / n for n in "abc")
    torch.manual_seed(123)  # whatever the process did before must not matter
    assert train(a, "--seed", "7") == 0
    torch.rand(5)
    assert train(b, "--seed", "7") == 0
    assert train(c, "--seed", "8") == 0
    for f in ("model.safetensors", "ema.safetensors"):
        fa, fb, fc = ((r / "checkpoints" / "step-0000004" / f).read_bytes() for r in (a, b, c))
        assert fa == fb and fa != fc, f
    sa, sb = (torch.load(r / "checkpoints" / "step-0000004" / "state.pt", weights_only=True) for r in (a, b))
    assert torch.equal(sa["torch_rng"], sb["torch_rng"])
    assert all(torch.equal(x, y) for x, y in zip(sa["optimizer"]["state"][0].values(),
                                                 sb["optimizer"]["state"][0].values()))


# ---- 3. NaN never goes unnoticed ------------------------------------------------------------------------------
def test_a_diverging_run_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    assert train(run, "--lr", "1e6", "--set", "train.warmup_steps=0", steps=20) == 2
    err = one_line_error(capsys, "train: step 2: the loss or its gradient is not finite (loss ", "train.nonfinite=skip")
    assert "no checkpoint had been saved yet" in err or "is kept" in err
    for folder in (run / "checkpoints").glob("step-*"):  # whatever was saved before it diverged is finite
        from safetensors.torch import load_file
        assert all(torch.isfinite(t).all() for t in load_file(folder / "model.safetensors").values())


def test_nonfinite_skip_skips_exactly_the_bad_steps(tmp_path):
    from denoisekit.data import make_toy
    from denoisekit.nets import MLP
    from denoisekit.train import TrainConfig, Trainer
    from denoisekit.train.trainer import NonFiniteError

    calls = []

    def loss_fn(model, x, cond, generators):
        calls.append(1)
        out = (model(x, torch.zeros(len(x)), None) - x) ** 2
        return out.mean(1) * (float("nan") if len(calls) in (3, 5) else 1.0)

    ds = make_toy("moons", 256)

    def trainer(mode, folder):
        torch.manual_seed(0)
        net = MLP(dim=2, hidden=16, depth=1)
        return Trainer(net, loss_fn, ds, tmp_path / folder, TrainConfig(steps=8, batch_size=16, progress=False,
                                                                          tensorboard=False, nonfinite=mode))
    t = trainer("skip", "skip")
    t.train()
    assert t.step == 8 and t.skipped == 2 and t.ema.updates == 6
    assert all(torch.isfinite(p).all() for p in t.model.parameters())
    calls.clear()
    t = trainer("stop", "stop")
    with pytest.raises(NonFiniteError, match=r"step 3: the loss or its gradient is not finite \(loss nan"):
        t.train()
    assert t.step == 2


def test_sampling_and_evaluation_refuse_non_finite_samples(run_copy, tmp_path, capsys):
    folder = run_copy / "checkpoints" / "step-0000004"
    from safetensors.torch import load_file
    for f in ("model.safetensors", "ema.safetensors"):
        w = load_file(folder / f)
        save_file({k: torch.full_like(v, float("nan")) for k, v in w.items()}, folder / f)
    capsys.readouterr()
    assert main(["sample", str(run_copy), "--n", "4", "--steps", "3", "--out", str(tmp_path / "s.png")]) == 2
    one_line_error(capsys, "not finite")
    assert not (tmp_path / "s.png").exists()
    np.savez(tmp_path / "nan.npz", x=np.full((50, 2), np.nan, np.float32))
    assert main(["eval", str(tmp_path / "nan.npz"), "--data", "moons"]) == 2
    one_line_error(capsys, "NaN")


# ---- 4-6. bad input: one line naming the argument, before any work, the run folder untouched -------------------
BAD_TRAIN = [  # (extra arguments, what the one line must say)
    (["--set", "net.chanels=3"], "net: unknown key 'chanels'"),
    (["--set", "train.stepz=3"], "train: unknown key 'stepz'"),
    (["--set", "loss.foo=1"], "loss: unknown key 'foo'"),
    (["--set", "process.Tee=1"], "process: unknown key 'Tee'"),
    (["--set", "process.T=0"], "process.T: expected an integer number of steps in 1..100000, got 0"),
    (["--set", "process.schedule=cosin"], "process.schedule"),
    (["--device", "nope"], "train.device: 'nope' is not a device name"),
    (["--device", "cuda:7"], "train.device: 'cuda:7'"),
    (["--set", "net.hidden=0"], "net.hidden: expected a positive integer, got 0"),
    (["--set", "train.sample_every=-1"], "train.sample_every: expected an integer >= 0"),
    (["--set", "train.steps=10.7"], "train.steps: expected an integer, got 10.7"),
    (["--steps", "10.7"], "argument --steps: invalid int value: '10.7'"),
    (["--set", "train.batch_size=true"], "train.batch_size: expected an integer, got True"),
    (["--set", "train.lr=-1"], "train.lr: expected a positive number"),
    (["--set", "train.ema_decay=1.5"], "train.ema_decay"),
    (["--set", "train.nonfinite=ignore"], "train.nonfinite"),
    (["--set", "train.grad_accum=0"], "train.grad_accum: expected a positive integer, got 0"),
    (["--set", "train.grad_accum=7"], "is not divisible by the 1 ranks x 7 micro-batches (grad_accum)"),
    (["--set", "train.fsdp=maybe"], "train.fsdp: expected true or false"),
    (["--set", "train.fsdp=true", "--set", "train.ema_profiles=[0.1]"],
     "train.fsdp: shards a model trained by one optimizer with a plain EMA; this run has post-hoc EMA profiles"),
    (["--set", "train.use_labels=true"], "train.use_labels: set by class_cond"),
    (["--set", "net.dim=3"], "net.dim: set from the data"),
    (["--set", "sample.sampler=nope"], "sample: sampler: expected one of"),
    (["--set", "sample.steps=0"], "sample.steps: expected a positive integer, got 0"),
    (["--set", "eval.schedule=sideways"], "eval"),
    (["--set", "sample.options.eta=0.5"], "sample: sampler 'ddpm': unknown option 'eta'"),
    (["--set", "clip_x0=-1"], "clip_x0: expected a positive number"),
    (["--set", "prediction=noise"], "prediction: expected one of"),
    (["--set", "class_cond=true"], "class_cond: the data set 'moons' has no labels"),
    (["--set", "image_size=16"], "image_size: expected null: the data set 'moons' holds vectors"),
    (["--set", "train.batch_size=100000"], "train.batch_size: 100000 is larger than the data set"),
    (["--set", "colour=red"], "config: unknown key 'colour'"),
    (["--set", "net=3"], "net: expected a mapping"),
    (["--set", "train.lr.x=1"], "train.lr: expected a number, got {'x': 1}"),
    (["--set", "train.steps.x=1"], "--set: train.steps is 6, not a section with keys"),
    (["--set", "a..b=1"], "--set: 'a..b' is not a dotted config key"),
    (["--data", "nope"], "data: 'nope' is neither a built-in data set"),
    (["--data", "8gaussians"], "data.name: 'moons' -> '8gaussians'"),  # another data set than the checkpoints
    (["--set", "net.hidden=64"], "net.hidden: 32 -> 64"),  # another network
    (["--set", "loss.t_sampling=lognormal"], "loss.t_sampling: 'uniform' -> 'lognormal'"),
]


@pytest.mark.parametrize("extra,message", BAD_TRAIN, ids=[" ".join(a) for a, _ in BAD_TRAIN])
def test_bad_train_input_is_one_line_and_leaves_the_run_folder_as_it_was(run_copy, capsys, extra, message):
    before = snapshot(run_copy)
    capsys.readouterr()
    args = ["train", "--out", str(run_copy), "--steps", "6", *TINY, "--set", "train.checkpoint_every=2"]
    if "--data" not in extra:
        args += ["--data", "moons"]
    with pytest.raises(SystemExit) if message.startswith("argument") else _nothing():
        assert main(args + extra) == 2
    one_line_error(capsys, message)
    assert snapshot(run_copy) == before


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("text,message", [
    ("data: moons\nnet: {hidden: 3\n", "is not valid YAML at line"),
    ("- data\n- moons\n", "should hold a mapping of settings"),
    ("just a string\n", "should hold a mapping of settings"),
    ("train:\n  steps: [1, 2]\n", "train.steps: expected an integer"),
    ("sample: 3\n", "sample: expected a mapping"),
    ("process:\n  T: 1\n", "process.T"),
])
def test_bad_config_files(tmp_path, capsys, text, message):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--out", str(out)]) == 2
    one_line_error(capsys, message)
    assert not out.exists()
    assert main(["train", "--config", str(tmp_path / "missing.yaml"), "--out", str(out)]) == 2
    one_line_error(capsys, "--config: no such file")


def test_out_that_is_a_file_and_the_default_run_announced(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    assert main(["train", "--data", "moons", "--out", str(f)]) == 2
    one_line_error(capsys, "--out:", "is a file")
    assert f.read_text() == "x"
    assert main(["train", "--check", "--out", str(tmp_path / "r")]) == 0  # no flags: says what it would do
    out = capsys.readouterr().out
    assert "the default run, MNIST-5k" in out and "config valid: UNet" in out and not (tmp_path / "r").exists()
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "the default run: MNIST-5k" in " ".join(capsys.readouterr().out.split())


def test_bad_sample_eval_and_info_input(trained, digits_run, tmp_path, capsys):
    def bad(args, *fragments):
        capsys.readouterr()
        assert main(args) == 2, args
        one_line_error(capsys, *fragments)

    s = ["sample", str(trained), "--n", "2", "--steps", "2"]
    bad(s + ["--out", str(tmp_path / "x.txt")], "--out: expected a file name ending in .png")
    bad(s + ["--out", str(tmp_path)], "--out:", "is a folder")
    (tmp_path / "f").write_text("x")
    bad(s + ["--out", str(tmp_path / "f" / "x.png")], "--out:", "is a file")
    bad(s + ["--gif", str(tmp_path / "x.png")], "--gif: expected a file name ending in .gif")
    bad(s + ["--npz", str(tmp_path / "x.png")], "--npz: expected a file name ending in .npz")
    bad(s + ["--device", "gpu"], "--device: 'gpu' is not a device name")
    bad(s + ["--label", "3"], "--class: this model was trained without class labels")
    bad(s + ["--scale", "0"], "--scale: expected a positive integer")
    bad(["sample", str(digits_run), "--n", "2", "--steps", "2", "--label", "12"], "--class: expected a class in 0..9")
    bad(["sample", str(digits_run), "--n", "2", "--steps", "2", "--label", "-1"], "--class: expected a class in 0..9")
    bad(["eval", str(trained), "--k", "0"], "--k: expected a positive number of neighbours")
    bad(["eval", str(trained), "--n", "3", "--k", "3", "--steps", "2"], "--n: precision/recall with --k 3")
    bad(["eval", str(trained), "--json", str(tmp_path)], "--json:", "is a folder")
    bad(["info", str(tmp_path / "nothing")], "checkpoint: no checkpoint at")
    assert not list(tmp_path.glob("x.*"))


def _break(folder: Path, how: str) -> None:
    if how == "truncated weights":
        w = folder / "model.safetensors"
        w.write_bytes(w.read_bytes()[:100])
    elif how == "empty weights":
        (folder / "model.safetensors").write_bytes(b"")
    elif how == "config null":
        (folder / "config.json").write_text("null")
    elif how == "config garbage":
        (folder / "config.json").write_text("{not json")
    elif how == "config of another network":
        c = json.loads((folder / "config.json").read_text())
        c["model"]["net"]["hidden"] = 48
        (folder / "config.json").write_text(json.dumps(c))
    elif how == "config of an unknown class":
        c = json.loads((folder / "config.json").read_text())
        c["model"]["net"]["class"] = "Transformer9000"
        (folder / "config.json").write_text(json.dumps(c))


@pytest.mark.parametrize("how,message", [
    ("truncated weights", "model.safetensors is damaged or not a safetensors file"),
    ("empty weights", "model.safetensors is damaged"),
    ("config null", "config.json should hold a JSON mapping"),
    ("config garbage", "config.json is not valid JSON"),
    ("config of another network", "do not match the network its config.json describes"),
    ("config of an unknown class", "does not describe a model this version can build"),
])
def test_damaged_checkpoints_are_one_line_errors_and_resume_falls_back(run_copy, tmp_path, capsys, how, message):
    latest = run_copy / "checkpoints" / "step-0000004"
    _break(latest, how)
    capsys.readouterr()
    assert main(["sample", str(run_copy), "--n", "2", "--steps", "2", "--raw", "--out", str(tmp_path / "s.png")]) == 2
    one_line_error(capsys, message)
    assert main(["info", str(run_copy)]) == 2
    one_line_error(capsys)
    if how.startswith("config of"):  # the checkpoint says it is another model: resuming is refused, not guessed
        assert train(run_copy, steps=6) == 2
        one_line_error(capsys, "resume:", "was trained with another set-up", "net.")
        return
    assert train(run_copy, steps=6) == 0  # falls back to step 2 and trains on, with a message
    out = capsys.readouterr().out
    assert "step-0000004 is unusable" in out and "resuming from step-0000002 instead" in out
    assert (run_copy / "checkpoints" / "step-0000006").exists()


def test_a_damaged_latest_checkpoint_falls_back_and_continues_bitwise(run_copy, tmp_path, capsys):
    reference = tmp_path / "reference"
    assert train(reference, steps=6) == 0
    w = run_copy / "checkpoints" / "step-0000004" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-7])
    capsys.readouterr()
    assert train(run_copy, steps=6) == 0
    out = capsys.readouterr().out
    assert "step-0000004 is unusable" in out and "resuming from step-0000002 instead" in out
    for f in ("model.safetensors", "ema.safetensors"):
        assert (run_copy / "checkpoints/step-0000006" / f).read_bytes() == \
            (reference / "checkpoints/step-0000006" / f).read_bytes()
    rows = [r.split(",")[0] for r in (run_copy / "metrics.csv").read_text().splitlines()[1:]]
    assert rows == ["1", "2", "3", "4", "5", "6"]  # rows 3-4 of the unusable stretch are not repeated


def test_npz_inputs(tmp_path, capsys):
    from denoisekit.data import load_npz
    imgs = np.random.default_rng(0).integers(0, 256, (20, 8, 8), dtype=np.uint8)
    labels = np.arange(20) % 4
    np.savez(tmp_path / "ok.npz", labels=labels, imgs=imgs)  # no 'x': the one array that is not labels
    ds = load_npz(tmp_path / "ok.npz")
    assert ds.x.shape == (20, 1, 8, 8) and ds.num_classes == 4 and torch.equal(ds.y, torch.as_tensor(labels))
    cases = {
        "float_labels": dict(x=imgs, y=np.linspace(0, 1, 20)),
        "negative_labels": dict(x=imgs, y=labels - 1),
        "label_count": dict(x=imgs, y=labels[:5]),
        "one_d": dict(x=np.arange(20.0)),
        "five_d": dict(x=np.zeros((2, 1, 1, 8, 8))),
        "strings": dict(x=np.array(["a", "b"])),
        "two_images": dict(a=imgs, b=imgs),
        "range": dict(x=np.full((20, 2), 200.0)),
    }
    messages = {"float_labels": "labels must be integer class indices", "negative_labels": "got -1",
                "label_count": "expected 20 labels", "one_d": "got an array of shape (20,)",
                "five_d": "got an array of shape (2, 1, 1, 8, 8)", "strings": "expected numbers",
                "two_images": "name the images 'x'", "range": "float values span [200, 200]"}
    for name, arrays in cases.items():
        np.savez(tmp_path / f"{name}.npz", **arrays)
        out = tmp_path / name
        assert main(["train", "--data", str(tmp_path / f"{name}.npz"), "--out", str(out), "--check"]) == 2, name
        one_line_error(capsys, messages[name])
        assert not out.exists()
    np.savez(tmp_path / "whole.npz", x=imgs, y=labels.astype(np.float32))  # whole-number floats are fine
    assert load_npz(tmp_path / "whole.npz").num_classes == 4


def test_eval_clamps_a_little_overshoot_with_a_warning_and_refuses_the_wrong_scale(tmp_path, capsys):
    pts = np.random.default_rng(0).uniform(-1, 1, (300, 2)).astype(np.float32)
    pts[0] = [1.2, -1.1]
    np.savez(tmp_path / "over.npz", x=pts)
    assert main(["eval", str(tmp_path / "over.npz"), "--data", "moons"]) == 0
    err = messages(capsys.readouterr().err)
    assert len(err) == 1 and err[0].startswith("denoisekit eval: warning: samples: 2 of 600 values") and \
        "clamped" in err[0]
    np.savez(tmp_path / "bytes.npz", x=pts * 127.5 + 127.5)  # 0..255 as floats: not silently clamped
    assert main(["eval", str(tmp_path / "bytes.npz"), "--data", "moons"]) == 2
    one_line_error(capsys, "float values span")


def test_pictures_take_the_format_their_name_says(trained, tmp_path):
    for name, fmt in (("s.jpg", "JPEG"), ("s.png", "PNG"), ("s.webp", "WEBP")):
        assert main(["sample", str(trained), "--n", "4", "--steps", "2", "--out", str(tmp_path / name)]) == 0
        with Image.open(tmp_path / name) as im:
            assert im.format == fmt


def test_vector_data_beyond_two_dimensions(tmp_path):
    pts = np.random.default_rng(0).uniform(-1, 1, (200, 5)).astype(np.float32)
    np.savez(tmp_path / "five.npz", x=pts)
    run = tmp_path / "run"
    assert train(run, data=tmp_path / "five.npz", steps=2) == 0
    with Image.open(run / "forward_process.png") as im:
        assert im.size[0] > 100
    assert main(["sample", str(run), "--n", "8", "--steps", "2", "--out", str(tmp_path / "s.png"),
                 "--npz", str(tmp_path / "s.npz")]) == 0
    assert np.load(tmp_path / "s.npz")["x"].shape == (8, 5)


# ---- 7. run folders ------------------------------------------------------------------------------------------
def test_no_resume_starts_a_clean_folder(run_copy, capsys):
    (run_copy / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert train(run_copy, "--no-resume", steps=2) == 0
    assert "--no-resume: removed the previous run's checkpoints" in capsys.readouterr().out
    assert sorted(p.name for p in (run_copy / "checkpoints").glob("step-*")) == ["step-0000002"]
    assert (run_copy / "notes.txt").read_text() == "mine"  # only the run's own outputs go
    assert [r.split(",")[0] for r in (run_copy / "metrics.csv").read_text().splitlines()] == ["step", "1", "2"]


def test_a_missing_ema_file_is_never_replaced_by_raw_weights(run_copy, tmp_path, capsys):
    (run_copy / "checkpoints" / "step-0000004" / "ema.safetensors").unlink()
    capsys.readouterr()
    assert main(["sample", str(run_copy), "--n", "2", "--steps", "2", "--out", str(tmp_path / "s.png")]) == 0
    err = messages(capsys.readouterr().err)
    assert err == [f"denoisekit sample: warning: checkpoint: {run_copy / 'checkpoints' / 'step-0000004'} has no EMA " \
                  f"weights; using the raw weights"]
    assert train(run_copy, steps=6) == 0
    assert "step-0000004 is unusable (checkpoint:" in capsys.readouterr().out


def test_interrupted_saves_are_tidied_on_resume(run_copy, capsys):
    ck = run_copy / "checkpoints"
    (ck / ".step-0000006.tmp-999").mkdir()
    (ck / ".latest.tmp-999").write_text("step-0000006")
    (run_copy / ".metrics.csv.tmp-abc.csv").write_text("half")
    os.replace(ck / "step-0000004", ck / ".step-0000004.old-999")  # killed between the two renames of a re-save
    capsys.readouterr()
    assert train(run_copy, steps=4) == 0
    out = capsys.readouterr().out
    assert "restored step-0000004" in out and "resuming" in out and "at step 4" in out
    assert sorted(p.name for p in ck.iterdir()) == ["latest", "step-0000002", "step-0000004"]
    assert not list(run_copy.glob(".*"))
