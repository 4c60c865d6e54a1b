"""Captions whose truth we know: MNIST-5k described from its labels and from attributes measured on the pixels (stroke
thickness, slant, size), each binned into words, and the same measurers score what a text-conditional model draws.

thickness = 2 area / perimeter of the ink (pixel edges between ink and background: a stroke of length l and width w
has area l w and perimeter 2 (l + w), so about w);
slant = -cov(column, row) / var(row) of the ink (> 0: the top leans right; second moments, as in deskewing);
size = the ink's bounding-box area over the median of the digit's class (a small or large two, not a one against an
eight). Bins are the data set's tertiles, so each word covers a third of the digits."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ATTRIBUTES = ("thickness", "slant", "size")
# per attribute: the words of bins 0, 1, 2 ('' for the middle bin: a caption leaves it out)
WORDS = {"thickness": ("thin", "", "thick"), "slant": ("slanting left", "", "slanting right"),
         "size": ("small", "", "large")}
TEMPLATES = ("a {adj}{digit}{slant}", "the digit {digit}{adj_after}{slant}", "{digit}{adj_after}{slant}")


def measure(x: torch.Tensor) -> dict:
    """Raw attributes of images x (N, 1, H, W) in [-1, 1]: thickness, slant, bounding-box area (numpy arrays)."""
    ink = ((x[:, 0].float() + 1) / 2).clamp(0, 1)
    on = ink > 0.5
    area = on.sum((1, 2)).float()
    pad = torch.nn.functional.pad(on, (1, 1, 1, 1))
    perimeter = ((pad[:, 1:] != pad[:, :-1]).sum((1, 2)) + (pad[:, :, 1:] != pad[:, :, :-1]).sum((1, 2))).float()
    thickness = 2 * area / perimeter.clamp(min=1)
    h, w = ink.shape[-2:]
    rows = torch.arange(h, dtype=torch.float32)[None, :, None]
    cols = torch.arange(w, dtype=torch.float32)[None, None, :]
    mass = ink.sum((1, 2)).clamp(min=1e-6)
    mr, mc = (ink * rows).sum((1, 2)) / mass, (ink * cols).sum((1, 2)) / mass
    var_r = (ink * (rows - mr[:, None, None]) ** 2).sum((1, 2)) / mass
    cov = (ink * (rows - mr[:, None, None]) * (cols - mc[:, None, None])).sum((1, 2)) / mass
    slant = -cov / var_r.clamp(min=1e-6)
    any_r, any_c = on.any(2), on.any(1)
    first = lambda m: m.float().argmax(1)  # noqa: E731
    last = lambda m: m.shape[1] - 1 - m.flip(1).float().argmax(1)  # noqa: E731
    box = ((last(any_r) - first(any_r) + 1) * (last(any_c) - first(any_c) + 1)).float() * on.any((1, 2))
    return {"thickness": thickness.numpy(), "slant": slant.numpy(), "box": box.numpy()}


@dataclass
class Bins:
    """Tertile edges of thickness and slant, and the median box area of each digit class (size is relative)."""
    thickness: tuple
    slant: tuple
    box_median: tuple
    size: tuple  # tertile edges of box / the class median

    @classmethod
    def fit(cls, x: torch.Tensor, y: torch.Tensor) -> "Bins":
        m = measure(x)
        y = y.numpy()
        medians = tuple(float(np.median(m["box"][y == k])) if (y == k).any() else 1.0 for k in range(10))
        rel = m["box"] / np.asarray(medians)[y]
        edges = lambda v: tuple(float(e) for e in np.quantile(v, [1 / 3, 2 / 3]))  # noqa: E731
        return cls(edges(m["thickness"]), edges(m["slant"]), medians, edges(rel))

    def to_dict(self) -> dict:
        return {k: list(getattr(self, k)) for k in ("thickness", "slant", "box_median", "size")}

    @classmethod
    def from_dict(cls, d: dict) -> "Bins":
        return cls(**{k: tuple(float(v) for v in d[k]) for k in ("thickness", "slant", "box_median", "size")})

    def attributes(self, x: torch.Tensor, digits) -> dict:
        """Bin indices 0/1/2 of each attribute for images x, size relative to `digits` (labels, or the prompted
        digits when scoring samples)."""
        m = measure(x)
        digits = np.asarray(digits)
        rel = m["box"] / np.asarray(self.box_median)[digits]
        return {"thickness": np.digitize(m["thickness"], self.thickness), "slant": np.digitize(m["slant"], self.slant),
                "size": np.digitize(rel, self.size)}


def caption(digit: int, attrs: dict, template: int = 0) -> str:
    """A caption from a digit and attribute bins, by one of the TEMPLATES: 'a small thick two slanting right'."""
    adjs = [WORDS[a][attrs[a]] for a in ("size", "thickness") if WORDS[a][attrs[a]]]
    slant = WORDS["slant"][attrs["slant"]]
    return TEMPLATES[template].format(adj="".join(a + " " for a in adjs), digit=DIGITS[digit],
                                      adj_after="".join(", " + a for a in adjs), slant=(" " + slant) if slant else "")


def parse(prompt: str) -> dict:
    """What a caption asks for: {'digit': k or None, attribute: bin or None}, read back from the words."""
    words = prompt.lower().replace(",", " ").split()
    text = " ".join(words)
    asked: dict = {"digit": next((k for k, d in enumerate(DIGITS) if d in words), None)}
    for a in ATTRIBUTES:
        asked[a] = next((b for b, w in enumerate(WORDS[a]) if w and w in text), None)
    return asked


@dataclass
class CaptionedDataset:
    """Images (in [-1, 1]) with a caption each, the digit labels and attribute bins they were made from (None for a
    user's captions) and, once a tokenizer is fitted, the captions' tokens: the conditioning a text model trains on."""
    x: torch.Tensor
    captions: list
    y: Optional[torch.Tensor] = None
    num_classes: Optional[int] = None
    name: str = ""
    attributes: Optional[dict] = None
    bins: Optional[Bins] = None
    tokens: Optional[torch.Tensor] = None
    tokenizer: Any = None  # the TextTokenizer that made `tokens`

    def __len__(self) -> int:
        return len(self.x)

    @property
    def is_image(self) -> bool:
        return self.x.ndim == 4

    def keep(self, mask: torch.Tensor) -> None:
        """Keep only the examples where `mask` is true (a held-out combination removed), in place."""
        idx = torch.nonzero(mask).reshape(-1)
        self.x = self.x[idx]
        self.captions = [self.captions[i] for i in idx.tolist()]
        self.y = self.y[idx] if self.y is not None else None
        if self.attributes is not None:
            self.attributes = {k: v[idx.numpy()] for k, v in self.attributes.items()}

    def conditioning(self, idx):
        """The captions' tokens of examples idx (once tokenized), else None."""
        from ..conditioning import Cond
        return None if self.tokens is None else Cond(tokens=self.tokens[idx])


def mnist_captions(seed: int = 0) -> CaptionedDataset:
    """MNIST-5k with a caption per image from its label and measured attributes, the phrasing drawn per image."""
    from ..data import load_mnist5k
    ds = load_mnist5k()
    bins = Bins.fit(ds.x, ds.y)
    attrs = bins.attributes(ds.x, ds.y.numpy())
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, len(TEMPLATES), len(ds))
    captions = [caption(int(ds.y[i]), {a: int(attrs[a][i]) for a in ATTRIBUTES}, int(templates[i]))
                for i in range(len(ds))]
    return CaptionedDataset(ds.x, captions, ds.y, 10, "mnist-captions", attrs, bins)


CAPTIONS_JSONL = "captions.jsonl"  # in an image folder's root: {"file": path relative to the root, "caption": text}


def folder_captions(root, files: list) -> list:
    """The caption of each image file below `root`: NAME.txt beside NAME.png (the usual fine-tuning layout), else the
    root's captions.jsonl entry; a one-line error names the first image without one."""
    import json
    from pathlib import Path
    root = Path(root)
    table: dict = {}
    jsonl = root / CAPTIONS_JSONL
    if jsonl.is_file():
        for n, line in enumerate(jsonl.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                table[str(Path(entry["file"]))] = str(entry["caption"])
            except (ValueError, KeyError, TypeError):
                raise ValueError(f"data: {jsonl} line {n}: expected a JSON object with 'file' and 'caption'") from None
    captions = []
    for f in files:
        txt = f.with_suffix(".txt")
        if txt.is_file():
            captions.append(txt.read_text(errors="replace").strip())
        elif str(f.relative_to(root)) in table:
            captions.append(table[str(f.relative_to(root))])
        else:
            raise ValueError(f"data: {f} has no caption ({txt.name} beside it, or an entry in {CAPTIONS_JSONL})")
    return captions


def captioned_folder(root, ds) -> CaptionedDataset:
    """An image folder's data set (from data.load_image_folder) with its captions."""
    from ..data import folder_images
    captions = folder_captions(root, folder_images(root))
    return CaptionedDataset(ds.x, captions, ds.y, ds.num_classes, ds.name)
