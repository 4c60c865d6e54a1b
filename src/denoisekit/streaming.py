"""Image folders larger than memory: the files are listed (and their sizes checked from their headers) once, and each
batch is read when the trainer asks for it, through a DataLoader (workers, pinned memory, prefetch) that follows the
trainer's own order, a function of (seed, step); so a streamed run sees the examples an in-memory run sees, resumes
exactly, and under torchrun each rank reads only its share."""
from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path
from typing import Optional

import torch

from .data import IMAGE_SUFFIXES, ArrayDataset, _load_image, _scale_uint8, folder_images, folder_labels


class LazyImages:
    """A tensor-like (N, C, H, W) view of image files in [-1, 1]: `x[idx]` reads those files (uint8 scaled as the
    in-memory loader scales them, so the values are the same bits)."""

    streamed = True
    ndim = 4
    dtype = torch.float32

    def __init__(self, files: list, size: Optional[int], mode: str, hw: tuple):
        """`files`: paths, or (tar shard, offset, size, member name) of images inside tar shards."""
        self.files, self.size, self.mode = [f if isinstance(f, tuple) else str(f) for f in files], size, mode
        self.shape = torch.Size((len(files), 1 if mode == "L" else 3, *hw))

    def __len__(self) -> int:
        return len(self.files)

    def read(self, i: int) -> torch.Tensor:
        """Example i as a (C, H, W) float tensor."""
        src = self.files[i]
        a = _load_image(Path(src) if isinstance(src, str) else _member_bytes(src), self.size, self.mode)
        if a.shape[:2] != tuple(self.shape[2:]):
            raise ValueError(f"data: {_name(src)} is {a.shape[1]}x{a.shape[0]}, the data's images "
                             f"{self.shape[3]}x{self.shape[2]}; pass image_size to resize all images")
        return _scale_uint8(a.reshape(*a.shape[:2], -1).transpose(2, 0, 1))

    def __getitem__(self, idx) -> torch.Tensor:
        if isinstance(idx, int):
            return self.read(idx)
        rows = range(len(self))[idx] if isinstance(idx, slice) else torch.as_tensor(idx).reshape(-1).tolist()
        return torch.stack([self.read(int(i)) for i in rows]) if len(rows) else torch.empty(0, *self.shape[1:])

    def batches(self, indices, start: int, stop: int, workers: int = 0, pin: bool = False):
        """An iterator of the batches self[indices(step)] for step = start .. stop - 1, read by `workers` processes
        ahead of the training (2 batches each; 0: read in the calling process), pinned for a GPU if `pin`."""
        loader = torch.utils.data.DataLoader(_Rows(self), batch_sampler=_StepBatches(indices, start, stop),
                                             num_workers=workers, pin_memory=pin,
                                             prefetch_factor=2 if workers else None)
        return iter(loader)

    def fingerprint(self) -> str:
        """A short hash of the file names, sizes and modification times (the content is never read whole)."""
        digest, stats = hashlib.sha256(), {}
        for f in self.files:
            path = f if isinstance(f, str) else f[0]
            st = stats.setdefault(path, Path(path).stat())
            digest.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:16]


def _member_bytes(src: tuple):
    """A tar member's bytes as a file object (random access by its recorded offset)."""
    with open(src[0], "rb") as f:
        f.seek(src[1])
        return io.BytesIO(f.read(src[2]))


def _name(src) -> str:
    return src if isinstance(src, str) else f"{src[0]}:{src[3]}"


def shard_examples(root: Path) -> Optional[tuple]:
    """(image sources, labels or None, number of classes or None) of the WebDataset-layout tar shards in `root`
    (members key.png, key.jpg, ... with an optional key.cls holding the class index), indexed once so any example is
    read by its offset; None if `root` holds no .tar file."""
    shards = sorted(root.glob("*.tar"))
    if not shards:
        return None
    examples: dict = {}
    for shard in shards:
        try:
            with tarfile.open(shard) as tf:
                for m in tf:
                    if not m.isfile():
                        continue
                    folder, base = os.path.split(m.name)
                    stem, _, ext = base.partition(".")
                    entry = examples.setdefault((str(shard), folder, stem), {})
                    if f".{ext.lower()}" in IMAGE_SUFFIXES:
                        entry["image"] = (str(shard), m.offset_data, m.size, m.name)
                    elif ext == "cls":
                        entry["cls"] = int(tf.extractfile(m).read().decode().strip())
        except (tarfile.TarError, OSError, ValueError) as e:
            raise ValueError(f"data: cannot index the shard {shard}: {e}") from None
    images = [e for e in examples.values() if "image" in e]
    if not images:
        raise ValueError(f"data: the shards in {root} hold no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    if all("cls" in e for e in images):
        y = torch.tensor([e["cls"] for e in images])
        return [e["image"] for e in images], y, int(y.max()) + 1
    return [e["image"] for e in images], None, None


def stream_image_folder(root: Path, image_size: Optional[int] = None, channels: Optional[int] = None) -> ArrayDataset:
    """An image folder, or a folder of WebDataset-layout .tar shards, as a streamed data set: files listed (shard
    members indexed), labels from first-level subfolders (as the in-memory loader) or the shards' .cls members, sizes
    from headers (every file's, unless image_size resizes them all; a shard's first), no pixels loaded. Shards are read
    by offset with tarfile, not webdataset's sequential readers: random access keeps the (seed, step) order exact."""
    from PIL import Image
    if channels not in (None, 1, 3):
        raise ValueError(f"channels: expected 1 or 3, got {channels}")
    shards = shard_examples(root)
    if shards is None and not any(p.suffix.lower() in IMAGE_SUFFIXES for p in root.rglob("*")):
        raise ValueError(f"data: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) and no .tar shards found under {root}")
    files, y, num_classes = shards if shards is not None else (folder_images(root), None, None)
    first = None
    # headers only, no pixels decoded: every file's in a folder (unless image_size resizes them), a shard's first
    for p in files if image_size is None and shards is None else files[:1]:
        try:
            with Image.open(p if shards is None else _member_bytes(p)) as im:
                size, grey = im.size, im.mode in ("L", "1", "I", "I;16", "F")
        except Exception as e:
            raise ValueError(f"data: cannot read image {_name(p)}: {e}") from None
        if first is None:
            first, mode = (p, size), "L" if grey else "RGB"
        elif size != first[1]:
            raise ValueError(f"data: {p} is {size[0]}x{size[1]} but {first[0]} is {first[1][0]}x{first[1][1]}; "
                             f"pass image_size to resize all images")
    mode = {1: "L", 3: "RGB"}.get(channels, mode)
    w, h = first[1]
    hw = (image_size, image_size) if image_size is not None else (h, w)
    if shards is None:
        y, num_classes = folder_labels(root, files)
    return ArrayDataset(LazyImages(files, image_size, mode, hw), y, num_classes, root.name)


class _StepBatches(torch.utils.data.Sampler):
    """The trainer's batches from `start` on: `indices(step)` for each step, in order (a DataLoader's batch sampler)."""

    def __init__(self, indices, start: int, stop: int):
        self.indices, self.start, self.stop = indices, start, stop

    def __iter__(self):
        for step in range(self.start, self.stop):
            yield self.indices(step).tolist()

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


class _Rows(torch.utils.data.Dataset):
    def __init__(self, x: LazyImages):
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.x.read(i)
