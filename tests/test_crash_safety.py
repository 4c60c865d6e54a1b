"""Crash safety through the CLI as a user meets it: `denoisekit train` killed with SIGKILL at random moments, or
stopped with Ctrl-C, then run again, ends bitwise where an uninterrupted run ends, with a log that repeats no step."""
import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

STEPS = 1500


def command(run: Path) -> list[str]:
    return [sys.executable, "-m", "denoisekit.cli", "train", "--data", "moons", "--out", str(run), "--steps",
            str(STEPS), "--set", "train.progress=false", "--set", "train.tensorboard=false", "--set", "net.hidden=32",
            "--set", "net.depth=1", "--set", "train.batch_size=16", "--set", "train.checkpoint_every=40",
            "--set", "train.log_every=5", "--set", "sample.steps=2", "--set", "train.lr_schedule=cosine"]


def env():
    e = dict(os.environ, OMP_NUM_THREADS="1")  # the same thread count in every run: the same float sums
    e["PYTHONPATH"] = str(Path(__file__).parents[1] / "src") + os.pathsep + e.get("PYTHONPATH", "")
    return e


def start(run: Path) -> subprocess.Popen:
    return subprocess.Popen(command(run), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())


def wait_for_training(proc: subprocess.Popen, run: Path, rows: int = 1, timeout: float = 120) -> None:
    """Until metrics.csv has `rows` more data rows than at the start (the loop is running)."""
    path = run / "metrics.csv"
    base = len(path.read_text().splitlines()) if path.exists() else 1
    t0 = time.time()
    while time.time() - t0 < timeout and proc.poll() is None:
        if path.exists() and len(path.read_text().splitlines()) >= base + rows:
            return
        time.sleep(0.01)


def metrics(run: Path) -> list[tuple[str, str]]:
    with open(run / "metrics.csv") as f:
        return [(r[0], r[1]) for r in csv.reader(f)][1:]  # step and loss (not the timing column)


def final_weights(run: Path) -> tuple[bytes, bytes]:
    folder = run / "checkpoints" / f"step-{STEPS:07d}"
    return (folder / "model.safetensors").read_bytes(), (folder / "ema.safetensors").read_bytes()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted run."""
    run = tmp_path_factory.mktemp("reference") / "run"
    assert subprocess.run(command(run), capture_output=True, env=env()).returncode == 0
    return run


def test_sigkill_at_random_moments_then_resume_is_bitwise_equal(tmp_path, reference):
    run, rng, kills = tmp_path / "run", random.Random(9), 0
    for _ in range(3):
        proc = start(run)
        wait_for_training(proc, run)
        time.sleep(rng.uniform(0, 0.6))  # anywhere: mid-step, mid-save, mid-log
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.communicate()  # waits, and closes the pipes
    done = subprocess.run(command(run), capture_output=True, text=True, env=env())
    assert done.returncode == 0, done.stderr
    assert kills >= 2
    assert final_weights(run) == final_weights(reference)
    assert metrics(run) == metrics(reference)  # every step logged once, with the same loss
    assert not [p for p in run.rglob(".*")]  # no temporary files or folders left behind


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path, reference):
    run = tmp_path / "run"
    proc = start(run)
    wait_for_training(proc, run, rows=2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "SIGINT: finishing this step and saving a checkpoint" in out
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("denoisekit train: interrupted at step "), err
    step = int(lines[0].split("interrupted at step ")[1].split(";")[0])
    assert 0 < step < STEPS
    assert (run / "checkpoints" / "latest").read_text() == f"step-{step:07d}"
    done = subprocess.run(command(run), capture_output=True, text=True, env=env())
    assert done.returncode == 0 and f"resuming {run} at step {step}" in done.stdout, done.stderr
    assert final_weights(run) == final_weights(reference)
    ours, theirs = metrics(run), metrics(reference)
    assert [r[0] for r in ours] == [r[0] for r in theirs]
    # the first row after the resume averages the steps since step `step` only (the interrupted run's share of that
    # logging window went unlogged); every other row is the same to the bit
    first = next(i for i, r in enumerate(ours) if int(r[0]) > step)
    assert ours[:first] + ours[first + 1:] == theirs[:first] + theirs[first + 1:]
