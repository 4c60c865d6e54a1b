"""Checkpoints written before the house reshaping (issue 19; made by tests/fixtures/make_legacy.py at commit d45c4e4)
load and sample the same bits today, through the CLI as a user runs it."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from denoisekit.cli import main
from fixtures.make_legacy import CLASSIFIER_SAMPLES, RUNS

LEGACY = Path(__file__).parent / "fixtures" / "legacy"
CASES = [(name, flags, npz) for name, (_, samples) in RUNS.items() for flags, npz in samples]


@pytest.mark.parametrize("name,flags,npz", CASES, ids=[c[2][:-4] for c in CASES])
def test_legacy_checkpoint_samples_the_same_bits(tmp_path, name, flags, npz):
    ckpt = shutil.copytree(LEGACY / name, tmp_path / name)
    assert main(["sample", str(ckpt), *flags, "--out", str(tmp_path / "x.png"), "--npz", str(tmp_path / "x.npz")]) == 0
    assert np.array_equal(np.load(tmp_path / "x.npz")["x"], np.load(LEGACY / name / npz)["x"])


@pytest.mark.parametrize("flags,npz", CLASSIFIER_SAMPLES, ids=[c[1][:-4] for c in CLASSIFIER_SAMPLES])
def test_legacy_classifier_guides_to_the_same_bits(tmp_path, flags, npz):
    assert main(["sample", str(LEGACY / "digits_cfg_hybrid"), *flags, "--classifier", str(LEGACY / "digits_classifier"),
                 "--out", str(tmp_path / "x.png"), "--npz", str(tmp_path / "x.npz")]) == 0
    assert np.array_equal(np.load(tmp_path / "x.npz")["x"], np.load(LEGACY / "digits_classifier" / npz)["x"])


def test_legacy_checkpoint_info(capsys):
    assert main(["info", str(LEGACY / "moons_vp_edm")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["step"] == 3 and info["prediction"] == "edm" and info["process"]["class"] == "VPSDE"
