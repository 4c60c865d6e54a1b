"""Reading sample sets to evaluate: .npz / .npy arrays or a folder of images, scaled to [-1, 1]."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def array_to_samples(a: np.ndarray, source: str) -> torch.Tensor:
    """uint8 0..255 to [-1, 1]; floats taken as [-1, 1] (clamped) unless they all lie in [0, 1]; NHWC to NCHW."""
    if a.ndim == 4 and a.shape[-1] in (1, 3) and a.shape[1] not in (1, 3):
        a = a.transpose(0, 3, 1, 2)
    elif a.ndim == 3 and a.shape[-1] not in (1, 2, 3):
        a = a[:, None]
    if a.ndim not in (2, 4):
        raise ValueError(f"samples: {source}: expected (N, C, H, W), (N, H, W, C), (N, H, W) or (N, D), got {a.shape}")
    if a.dtype == np.uint8:
        return torch.from_numpy(a.astype(np.float32) / 127.5 - 1)
    x = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    if not torch.isfinite(x).all():
        raise ValueError(f"samples: {source} holds NaN or infinite values")
    if a.ndim == 4 and x.min() >= 0 and x.max() <= 1:
        return x * 2 - 1
    return x.clamp(-1, 1) if a.ndim == 4 else x


def load_samples(path) -> torch.Tensor:
    """Samples from a .npz (key 'x', 'samples', 'images' or the first), a .npy, or a folder of image files."""
    path = Path(path)
    if path.is_dir():
        from ..data import load_image_folder
        return load_image_folder(path).x
    if path.suffix == ".npz":
        with np.load(path) as f:
            keys = list(f.keys())
            key = next((k for k in ("x", "samples", "images", "arr_0") if k in keys), keys[0] if keys else None)
            if key is None:
                raise ValueError(f"samples: {path} holds no arrays")
            return array_to_samples(f[key], str(path))
    if path.suffix == ".npy":
        return array_to_samples(np.load(path), str(path))
    raise ValueError(f"samples: {path} is not a .npz, .npy, image folder or checkpoint/run folder")
