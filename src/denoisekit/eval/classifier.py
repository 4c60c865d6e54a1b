"""The reference classifier: a small CNN trained once, deterministically, on the data set it will judge.

No network can be downloaded here, so image quality is measured in the features of our own classifier. It is
cached under the user's cache folder, keyed by a hash of the data set's contents and of this recipe.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

RECIPE_VERSION = "cnn-v1"   # change when the architecture or training recipe changes: old caches are then ignored


def cache_dir(root=None) -> Path:
    """`root` if given, else $DENOISEKIT_CACHE, else $XDG_CACHE_HOME/denoisekit, else ~/.cache/denoisekit."""
    if root:
        return Path(root)
    if os.environ.get("DENOISEKIT_CACHE"):
        return Path(os.environ["DENOISEKIT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "denoisekit"


def data_hash(x: torch.Tensor, y: torch.Tensor) -> str:
    """SHA-256 of the images (float32), the labels (int64), their shapes and the recipe version."""
    h = hashlib.sha256(RECIPE_VERSION.encode())
    if hasattr(x, "fingerprint"):  # streamed images (streaming.LazyImages): their files' names, sizes and times
        h.update(f"{tuple(x.shape)}{x.fingerprint()}".encode())
        x = torch.zeros(0)
    for t in (x.float().contiguous(), y.long().contiguous()):
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


class FeatureCNN(nn.Module):
    """Three conv stages (GroupNorm, SiLU, 2x average pooling while the map is larger than 4x4), global average
    pooling to the feature vector, and a linear layer to the class logits."""

    def __init__(self, in_channels: int, num_classes: int, widths=(16, 32, 64)):
        super().__init__()
        self.args = {"in_channels": in_channels, "num_classes": num_classes, "widths": list(widths)}
        layers, c = [], in_channels
        for w in widths:
            layers += [nn.Conv2d(c, w, 3, padding=1), nn.GroupNorm(8, w), nn.SiLU(),
                       nn.Conv2d(w, w, 3, padding=1), nn.GroupNorm(8, w), nn.SiLU()]
            c = w
        self.stages = nn.ModuleList(nn.Sequential(*layers[i:i + 6]) for i in range(0, len(layers), 6))
        self.head = nn.Linear(c, num_classes)

    @property
    def feature_dim(self) -> int:
        return self.head.in_features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) in [-1, 1] to (N, widths[-1]) pooled features; inputs above 64x64 are first pooled down."""
        while x.shape[-1] > 64:
            x = F.avg_pool2d(x, 2)
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i < len(self.stages) - 1 and min(x.shape[-2:]) > 4:
                x = F.avg_pool2d(x, 2, ceil_mode=True)
        return x.mean((-2, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@dataclass
class ReferenceClassifier:
    """A trained FeatureCNN with its held-out accuracy and where it is cached."""
    net: FeatureCNN
    accuracy: float
    meta: dict
    path: Optional[Path] = None
    trained_now: bool = False

    @torch.no_grad()
    def features_and_logits(self, x: torch.Tensor, batch: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and logits of (N, C, H, W) images in [-1, 1], batched, on the classifier's device."""
        self.net.eval()
        device = next(self.net.parameters()).device
        feats, logits = [], []
        for i in range(0, len(x), batch):
            f = self.net.features(x[i:i + batch].to(device).float())
            feats.append(f.cpu())
            logits.append(self.net.head(f).cpu())
        return torch.cat(feats), torch.cat(logits)


def split_indices(n: int, held_out: float = 0.15, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random (train, held-out) split of n examples."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    k = max(1, int(round(n * held_out)))
    return perm[k:], perm[:k]


def _shift(x: torch.Tensor, g: torch.Generator, pixels: int) -> torch.Tensor:
    """Random translations by up to `pixels` in each direction (edge-replicated), a light augmentation."""
    if pixels == 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (pixels,) * 4, mode="replicate")
    dx = torch.randint(0, 2 * pixels + 1, (n,), generator=g)
    dy = torch.randint(0, 2 * pixels + 1, (n,), generator=g)
    rows = (dy[:, None] + torch.arange(h)[None])[:, None, :, None].expand(n, x.shape[1], h, w + 2 * pixels)
    out = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w)[None])[:, None, None, :].expand(n, x.shape[1], h, w)
    return out.gather(3, cols)


def train_classifier(x: torch.Tensor, y: torch.Tensor, num_classes: int, *, seed: int = 0,
                     images_seen: int = 30000, batch_size: int = 128, lr: float = 2e-3,
                     progress: bool = True) -> ReferenceClassifier:
    """Train a FeatureCNN on 85% of (x, y) with AdamW and a cosine learning rate; report accuracy on the rest.

    Deterministic: initialisation, split, batch order and augmentation are drawn from generators seeded by
    `seed`, and training runs on the CPU."""
    start = time.perf_counter()
    train_idx, test_idx = split_indices(len(x), seed=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = FeatureCNN(x.shape[1], num_classes)
    g = torch.Generator().manual_seed(seed + 1)
    steps = max(100, math.ceil(images_seen / batch_size))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    shift = max(1, x.shape[-1] // 14)
    net.train()
    perm, pos = torch.randperm(len(train_idx), generator=g), 0
    for _ in tqdm(range(steps), desc="reference classifier", disable=not progress, leave=False):
        if pos + batch_size > len(perm):
            perm, pos = torch.randperm(len(train_idx), generator=g), 0
        idx = train_idx[perm[pos:pos + batch_size]]
        pos += batch_size
        loss = F.cross_entropy(net(_shift(x[idx].float(), g, shift)), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    net.eval()
    with torch.no_grad():
        pred = torch.cat([net(x[test_idx[i:i + 500]].float()).argmax(1) for i in range(0, len(test_idx), 500)])
    accuracy = float((pred == y[test_idx]).float().mean())
    meta = {"accuracy": accuracy, "held_out": len(test_idx), "trained_on": len(train_idx), "steps": steps,
            "batch_size": batch_size, "seed": seed, "recipe": RECIPE_VERSION, "args": net.args,
            "train_seconds": round(time.perf_counter() - start, 1)}
    return ReferenceClassifier(net, accuracy, meta, trained_now=True)


def reference_classifier(dataset, *, cache: bool = True, root: Optional[Path] = None, seed: int = 0,
                         progress: bool = True) -> ReferenceClassifier:
    """The cached reference classifier of a labelled data set, trained (once) when it is not in the cache."""
    if dataset.y is None or not dataset.num_classes:
        raise ValueError(f"data: {dataset.name!r} has no class labels, so no reference classifier can be trained; "
                         f"use labelled data (subfolders per class, or 'y' in the .npz) or --inception-weights")
    if not dataset.is_image:
        raise ValueError(f"data: {dataset.name!r} is not image data; low-dimensional data is scored by SWD and MMD")
    key = data_hash(dataset.x, dataset.y)
    folder = cache_dir(root) / "classifiers" / f"{dataset.name or 'data'}-{key[:16]}-s{seed}"
    if cache and (folder / "model.safetensors").exists():
        meta = json.loads((folder / "meta.json").read_text())
        with torch.random.fork_rng(devices=[]):
            net = FeatureCNN(**meta["args"])
        net.load_state_dict(load_file(str(folder / "model.safetensors")))
        return ReferenceClassifier(net.eval(), meta["accuracy"], meta, folder)
    clf = train_classifier(dataset.x, dataset.y, dataset.num_classes, seed=seed, progress=progress)
    clf.meta.update(data=dataset.name, data_sha256=key)
    if cache:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        save_file({k: v.contiguous() for k, v in clf.net.state_dict().items()}, str(tmp / "model.safetensors"))
        (tmp / "meta.json").write_text(json.dumps(clf.meta, indent=2))
        try:
            os.replace(tmp, folder)
        except OSError:  # another process cached it first
            shutil.rmtree(tmp, ignore_errors=True)
        clf.path = folder
    return clf
