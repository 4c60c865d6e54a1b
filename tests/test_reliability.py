"""Reliability (issue 9), first part: a checkpoint someone hands you cannot run code."""
import os

import numpy as np
import torch

from denoisekit.cli import main
from denoisekit.train.checkpoint import load_state


class Planted:
    """A pickle payload: unpickling it would create the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _tiny_run(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--data", "moons", "--out", str(run), "--steps", "2", "--set", "train.progress=false",
                 "--set", "train.checkpoint_every=2", "--set", "train.sample_every=0"]) == 0
    return run


def test_a_planted_pickle_in_the_state_file_never_executes(tmp_path, capsys):
    run = _tiny_run(tmp_path)
    state = run / "checkpoints" / "step-0000002" / "state.pt"
    marker = tmp_path / "pwned"
    torch.save({"step": 2, "payload": Planted(marker)}, state)  # a pickle that runs a command when loaded
    capsys.readouterr()
    assert main(["info", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a plain training-state file" in err and "state.pt" in err
    assert main(["train", "--data", "moons", "--out", str(run), "--steps", "4", "--set", "train.progress=false"]) == 2
    assert "not a plain training-state file" in capsys.readouterr().err
    assert not marker.exists()


def test_state_files_hold_only_tensors_and_plain_values(tmp_path):
    """A fresh checkpoint's state loads with weights_only=True and nothing allowed beyond it; one written before
    the numpy RNG state became tensors (a numpy array inside) still loads."""
    run = _tiny_run(tmp_path)
    folder = run / "checkpoints" / "step-0000002"
    state = torch.load(folder / "state.pt", weights_only=True)
    assert state["step"] == 2 and isinstance(state["numpy_rng"]["keys"], torch.Tensor)
    torch.save({**state, "numpy_rng": np.random.get_state()}, folder / "state.pt")
    assert isinstance(load_state(folder)["numpy_rng"], tuple)
