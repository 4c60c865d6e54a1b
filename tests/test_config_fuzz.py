"""Property-based fuzz (hypothesis) of the run-config loader and of `train --set`: whatever a user writes, the answer
is either a valid run (`train --check`) or one line `denoisekit train: error: ...`; never a traceback or an
'internal error', and nothing is written."""
import contextlib
import io

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from denoisekit.cli import main

SECTIONS = {
    "net": ["channels", "channel_mult", "num_res_blocks", "attention_levels", "num_heads", "dropout", "resample",
            "time_embedding", "patch_size", "hidden", "depth", "in_channels", "num_classes", "out_channels"],
    "process": ["schedule", "T", "betas", "zero_terminal_snr"],
    "loss": ["t_sampling", "min_snr_gamma", "p_mean", "p_std"],
    "train": ["steps", "batch_size", "lr", "lr_schedule", "warmup_steps", "weight_decay", "betas", "grad_clip",
              "ema_decay", "ema_warmup", "seed", "use_labels", "log_every", "checkpoint_every", "sample_every",
              "eval_every", "amp", "compile", "device", "tensorboard", "progress", "nonfinite", "channels_last",
              "ema_profiles", "ema_snapshot_every"],
    "sample": ["sampler", "steps", "schedule", "options", "n", "seed"],
    "eval": ["sampler", "steps", "schedule", "options", "n", "seed"],
}
TOP = ["image_size", "channels", "class_cond", "prediction", "sigma_data", "clip_x0"]
WORDS = ["linear", "cosine", "custom", "eps", "v", "edm", "ddim", "heun", "dpmpp_2m", "karras", "auto", "uniform",
         "cpu", "cuda", "skip", "stop", "sinusoidal", "fourier", "biggan", "lognormal", "constant", "eta", "order"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 40), st.sampled_from(WORDS), st.text(max_size=6),
                    st.floats(-50, 50), st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e-3, 0.5]))
values = st.one_of(scalars, st.lists(st.one_of(st.integers(-2, 4), st.floats(0, 1), st.text(max_size=3)), max_size=4),
                   st.dictionaries(st.sampled_from(WORDS + ["x"]), scalars, max_size=2))


def section(name):
    keys = st.sampled_from(SECTIONS[name] + ["junk"])
    return st.one_of(st.dictionaries(keys, values, max_size=4), st.dictionaries(keys, values, max_size=2), values)


def sometimes_valid(valid):
    """Mostly sensible values, so the fuzz reaches the nested sections instead of stopping at the top level."""
    return st.one_of(st.sampled_from(valid), st.sampled_from(valid), st.sampled_from(valid), values)


TOP_VALID = {"image_size": [None, 8, 16], "channels": [None, 1], "class_cond": [False, True],
             "prediction": ["eps", "v", "x0", "edm", "score"], "sigma_data": [0.5, 1.0], "clip_x0": [None, 1.0]}
STRATEGY = {**{name: section(name) for name in SECTIONS}, **{k: sometimes_valid(TOP_VALID[k]) for k in TOP},
            "colour": values}
entries = st.sampled_from(sorted(STRATEGY)).flatmap(lambda k: st.tuples(st.just(k), STRATEGY[k]))
configs = st.tuples(st.sampled_from(["moons", "8gaussians", "digits", "digits", "mnist", "nope", 3, None]),
                    st.lists(entries, max_size=3)).map(lambda c: {"data": c[0], **dict(c[1])})


def run_cli(args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(args)
    return rc, out.getvalue(), err.getvalue()


def check_answer(rc, out, err, folder):
    lines = err.strip().splitlines()
    assert "internal error" not in err and "Traceback" not in err, err
    if rc == 0:
        assert "config valid:" in out and all(": warning: " in x for x in lines), (out, err)
    else:
        assert rc == 2 and len(lines) == 1 and lines[0].startswith("denoisekit train: error: "), (rc, err)
    assert not folder.exists()  # --check never writes, and errors come before any writing


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])


@FUZZ
@given(config=configs)
def test_any_run_config_is_valid_or_one_line(tmp_path, config):
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(config))
    check_answer(*run_cli(["train", "--config", str(f), "--out", str(tmp_path / "run"), "--check"]), tmp_path / "run")


@FUZZ
@given(text=st.lists(st.sampled_from(list("abdnt:{}[]-,'\"\n &*!|>%@0.1e") + ["data", "train", "net", "moons"]),
                    max_size=30).map("".join))
def test_any_config_text_is_valid_or_one_line(tmp_path, text):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    check_answer(*run_cli(["train", "--config", str(f), "--data", "moons", "--out", str(tmp_path / "run"),
                           "--check"]), tmp_path / "run")


paths = st.one_of(
    st.tuples(st.sampled_from(list(SECTIONS)), st.sampled_from(sum(SECTIONS.values(), []) + ["junk"])).map(".".join),
    st.sampled_from(TOP + ["colour", "net", "train", "sample.options.eta", "train.lr.x", "a..b", ".", ""]))
texts = st.one_of(st.sampled_from(["1e-3", "true", "[1, 2]", "{a: 1}", ":", "- x", "", "nan", "inf", "-1", "0",
                                   "10.7", "null", "'quoted'", "&anchor", "*alias", "[1,", "{", "ddim", "cuda:3"]),
                  st.text(max_size=8))


@FUZZ
@given(sets=st.lists(st.tuples(paths, texts), min_size=1, max_size=3))
def test_any_set_flags_are_valid_or_one_line(tmp_path, sets):
    args = ["train", "--data", "moons", "--out", str(tmp_path / "run"), "--check"]
    for k, v in sets:
        args += ["--set", f"{k}={v}"]
    check_answer(*run_cli(args), tmp_path / "run")
