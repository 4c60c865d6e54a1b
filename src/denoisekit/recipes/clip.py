"""`denoisekit train-clip`: GLIDE's noised CLIP (an image encoder of x_t and t, and a text encoder) trained by the
contrastive loss at all noise levels on captioned images, into the same run-folder and checkpoint format."""
from __future__ import annotations

from pathlib import Path

import torch

from ..guidance import NoisyCLIP
from ..nets.clip import NoisyCLIPNet
from ..objectives import CLIPLoss
from ..processes import DiscreteVP
from .build import build_dataset, run_record, seeded, train_settings
from .classifier import train_guide_run
from .config import RunConfig, build_process, build_section
from .text import captioned, settings_of, text_record, tokenize_dataset

NOISE_LEVELS = (0, 250, 500, 750, 999)  # the times the end-of-run retrieval report uses


def prepare_clip(rc: RunConfig):
    """(captioned, tokenized data; the noised CLIP, seeded by train.seed; its loss; the training settings)."""
    settings = settings_of(rc.text)
    ds = captioned(build_dataset(rc), rc.data)
    if not ds.is_image:
        raise ValueError(f"data: train-clip needs captioned images; {ds.name!r} holds vectors")
    tok = tokenize_dataset(ds, settings)
    tc = train_settings(rc, ds, use_labels=True)
    process = build_process(rc.process)
    if not isinstance(process, DiscreteVP):
        raise ValueError("process.kind: train-clip supports the ddpm process only (the one CLIP guidance reads)")
    text = {"vocab_size": tok.vocab_size, "dim": settings.dim, "layers": settings.layers, "heads": settings.heads,
            "max_len": settings.max_len}  # the shared space is as wide as the text encoder
    net = seeded(tc.seed, lambda: NoisyCLIPNet(ds.x.shape[1], settings.dim, dict(rc.net), text))
    return ds, NoisyCLIP(net, process), build_section("loss", CLIPLoss, rc.loss), tc


@torch.no_grad()
def retrieval_by_noise_level(clip: NoisyCLIP, ds, n: int = 500, seed: int = 0) -> dict:
    """Caption retrieval of noised training images.

    How often an image's nearest caption (among the distinct captions of n examples) is its own, at each of
    NOISE_LEVELS: the contrastive objective's accuracy."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(ds), generator=g)[:n]
    device = next(clip.parameters()).device
    x0, tokens = ds.x[idx].to(device), ds.tokens[idx].to(device)
    distinct, own = torch.unique(tokens, dim=0, return_inverse=True)
    text = clip.net.text(distinct)
    out = {}
    for t in NOISE_LEVELS:
        t = min(t, int(clip.process.t_max))
        tt = torch.full((len(x0),), float(t), dtype=torch.float64, device=device)
        x_t = clip.process.q_sample(x0, tt, torch.randn(x0.shape, generator=g).to(device))
        out[f"t={t}"] = float(((clip.image(x_t, tt) @ text.T).argmax(1) == own).float().mean())
    return out


def train_clip_run(rc: RunConfig, out: Path, resume: bool = True, prepared=None) -> Path:
    """Train a noised CLIP per the config (net: the image encoder's settings; text: the text encoder's, whose width
    is the shared embedding's)."""
    prepared = prepared or prepare_clip(rc)
    ds, _, loss, _ = prepared
    return train_guide_run(rc, out, resume, prepared, {**run_record(rc, ds, loss), **text_record(ds),
                                                       "kind": "noised CLIP"}, "retrieval.json",
                           retrieval_by_noise_level, f"a noised CLIP ({len(set(ds.captions))} distinct captions)")
