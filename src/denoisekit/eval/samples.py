"""Reading sample sets to evaluate: .npz / .npy arrays or a folder of images, scaled to [-1, 1] like the data."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data import _to_nchw, load_image_folder, load_npz


def load_samples(path) -> torch.Tensor:
    """Samples from a .npz, a .npy or a folder of image files; values a little outside [-1, 1] are clamped, with a
    warning."""
    path = Path(path)
    if path.is_dir():
        return load_image_folder(path).x
    if path.suffix == ".npz":
        return load_npz(path, clamp=True).x
    if path.suffix == ".npy":
        try:
            a = np.load(path, allow_pickle=False)
        except Exception as e:
            raise ValueError(f"samples: cannot read {path} as .npy: {str(e).splitlines()[0] if str(e) else e!r}") from None
        return _to_nchw(a, str(path), clamp=True)
    raise ValueError(f"samples: {path} is not a .npz, .npy, image folder or checkpoint/run folder")
