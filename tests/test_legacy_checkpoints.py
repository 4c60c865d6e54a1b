"""Checkpoints written before the house reshaping (issue 19; made by tests/fixtures/make_legacy.py at commit d45c4e4)
load and sample the same numbers today, through the CLI as a user runs it: the same bits on a CPU of the kind that
wrote them (AVX2), and within float32 rounding (1e-6 of the largest value) on another, whose matmul and convolution
kernels (AVX-512) sum in another order; a changed schedule, step or guidance formula moves them by far more."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from denoisekit.cli import main
from fixtures.make_legacy import CLASSIFIER_SAMPLES, RUNS

LEGACY = Path(__file__).parent / "fixtures" / "legacy"
def same_numbers(got: np.ndarray, want: np.ndarray) -> None:
    """Equal up to float32 rounding across CPU instruction sets: 1e-6 of the largest magnitude."""
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * float(np.abs(want).max()))


CASES = [(name, flags, npz) for name, (_, samples) in RUNS.items() for flags, npz in samples]


@pytest.mark.parametrize("name,flags,npz", CASES, ids=[c[2][:-4] for c in CASES])
def test_legacy_checkpoint_samples_the_same_bits(tmp_path, name, flags, npz):
    ckpt = shutil.copytree(LEGACY / name, tmp_path / name)
    assert main(["sample", str(ckpt), *flags, "--out", str(tmp_path / "x.png"), "--npz", str(tmp_path / "x.npz")]) == 0
    same_numbers(np.load(tmp_path / "x.npz")["x"], np.load(LEGACY / name / npz)["x"])


@pytest.mark.parametrize("flags,npz", CLASSIFIER_SAMPLES, ids=[c[1][:-4] for c in CLASSIFIER_SAMPLES])
def test_legacy_classifier_guides_to_the_same_bits(tmp_path, flags, npz):
    assert main(["sample", str(LEGACY / "digits_cfg_hybrid"), *flags, "--classifier", str(LEGACY / "digits_classifier"),
                 "--out", str(tmp_path / "x.png"), "--npz", str(tmp_path / "x.npz")]) == 0
    same_numbers(np.load(tmp_path / "x.npz")["x"], np.load(LEGACY / "digits_classifier" / npz)["x"])


def test_legacy_checkpoint_info(capsys):
    assert main(["info", str(LEGACY / "moons_vp_edm")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["step"] == 3 and info["prediction"] == "edm" and info["process"]["class"] == "VPSDE"


def _state_with_numpy_path(folder: Path, module: bytes) -> None:
    """A state.pt holding a numpy array pickled (protocol 2) with numpy's array constructor under `module`: numpy 2
    writes numpy._core.multiarray, numpy 1 wrote numpy.core.multiarray."""
    import io
    import zipfile

    import torch
    buf = io.BytesIO()
    torch.save({"step": 3, "numpy_rng": ("MT19937", np.arange(4, dtype=np.uint32), 2, 0, 0.0)}, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / "state.pt", "w", zipfile.ZIP_STORED) as out:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("data.pkl"):
                assert data.count(b"cnumpy._core.multiarray\n") == 1
                data = data.replace(b"cnumpy._core.multiarray\n", b"c" + module + b"\n")
            out.writestr(info, data)


@pytest.mark.parametrize("module", [b"numpy.core.multiarray", b"numpy._core.multiarray"], ids=["numpy1", "numpy2"])
def test_state_files_pickled_under_numpy_1_or_2_load(tmp_path, module):
    from denoisekit.train.checkpoint import load_state
    _state_with_numpy_path(tmp_path / "ckpt", module)
    state = load_state(tmp_path / "ckpt")
    assert state["step"] == 3 and np.array_equal(state["numpy_rng"][1], np.arange(4))


def test_a_state_file_naming_another_global_is_refused_in_one_line(tmp_path):
    """Anything beyond tensors, plain values and numpy's array constructors is refused, never unpickled."""
    from denoisekit.train.checkpoint import load_state
    _state_with_numpy_path(tmp_path / "ckpt", b"os\nsystem")
    with pytest.raises(ValueError, match=r"^checkpoint: .*state.pt is not a plain training-state file \(only tensors "
                                         r"and plain values are read, nothing is unpickled\)"):
        load_state(tmp_path / "ckpt")
