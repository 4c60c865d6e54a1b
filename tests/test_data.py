"""Data sets: ranges, shapes, labels, and one-line errors that name the file."""
import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from denoisekit.data import TOYS, load_dataset, make_toy


@pytest.mark.parametrize("name", TOYS)
def test_toys_are_2d_in_range_and_seeded(name):
    a, b = make_toy(name, 2000, seed=1), make_toy(name, 2000, seed=1)
    assert a.x.shape == (2000, 2) and float(a.x.abs().max()) <= 1.0 and float(a.x.std()) > 0.2
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, make_toy(name, 2000, seed=2).x)


def test_digits_and_mnist():
    d = load_dataset("digits")
    assert d.x.shape == (1797, 1, 8, 8) and d.num_classes == 10 and len(d.y) == 1797
    assert float(d.x.min()) == -1.0 and float(d.x.max()) == 1.0
    m = load_dataset("mnist")
    assert m.x.shape == (5000, 1, 28, 28) and m.num_classes == 10 and set(m.y.tolist()) == set(range(10))
    assert float(m.x.min()) == -1.0 and float(m.x.max()) == 1.0
    assert float((m.x > 0).float().mean()) < 0.25  # white strokes on black, as MNIST is
    assert load_dataset("mnist", image_size=16).x.shape == (5000, 1, 16, 16)


def _img(path, size, mode="L", value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, 0, 255)).save(path)


def test_image_folder_with_classes_resize_and_rgb(tmp_path):
    _img(tmp_path / "cats" / "a.png", (40, 30), "RGB")
    _img(tmp_path / "cats" / "b.jpg", (30, 40), "RGB")
    _img(tmp_path / "dogs" / "c.png", (64, 64), "RGB")
    ds = load_dataset(str(tmp_path), image_size=16)
    assert ds.x.shape == (3, 3, 16, 16) and ds.y.tolist() == [0, 0, 1] and ds.num_classes == 2
    assert float(ds.x[:, 2].mean()) == pytest.approx(1.0, abs=0.02)  # blue channel 255 -> 1
    gray = load_dataset(str(tmp_path), image_size=8, channels=1)
    assert gray.x.shape == (3, 1, 8, 8)


def test_image_folder_errors_name_the_problem(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        load_dataset(str(tmp_path / "empty"))
    bad = tmp_path / "bad"
    _img(bad / "ok.png", (8, 8))
    (bad / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png"):
        load_dataset(str(bad))
    mixed = tmp_path / "mixed"
    _img(mixed / "a.png", (8, 8))
    _img(mixed / "b.png", (9, 8))
    with pytest.raises(ValueError, match=r"b\.png is 9x8.*image_size"):
        load_dataset(str(mixed))
    assert load_dataset(str(mixed), image_size=8).x.shape == (2, 1, 8, 8)
    with pytest.raises(ValueError, match="neither a built-in"):
        load_dataset(str(tmp_path / "nowhere"))


def test_npz_layouts(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "u8.npz", x=rng.integers(0, 256, (5, 6, 6, 3), dtype=np.uint8), y=np.arange(5) % 2)
    ds = load_dataset(str(tmp_path / "u8.npz"))
    assert ds.x.shape == (5, 3, 6, 6) and ds.num_classes == 2 and float(ds.x.abs().max()) <= 1
    np.savez(tmp_path / "f.npz", images=rng.random((4, 1, 5, 5)).astype(np.float32))
    assert float(load_dataset(str(tmp_path / "f.npz")).x.min()) >= -1
    np.savez(tmp_path / "wide.npz", x=rng.random((4, 5, 5)) * 10)
    with pytest.raises(ValueError, match="wide.npz.*expected"):
        load_dataset(str(tmp_path / "wide.npz"))


def test_idx_file(tmp_path):
    a = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + struct.pack(">III", 2, 4, 4) + a.tobytes())
    ds = load_dataset(str(tmp_path / "train-images-idx3-ubyte.gz"))
    assert ds.x.shape == (2, 1, 4, 4) and float(ds.x[0, 0, 0, 0]) == -1.0
