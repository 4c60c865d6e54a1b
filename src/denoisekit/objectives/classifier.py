"""The noisy classifier's objective (Dhariwal & Nichol 2021, sec. 4.1)."""
from __future__ import annotations

import torch

from ..conditioning import Cond, labels_of
from ..config import configurable
from ..utils import Generator
from .simple import SimpleLoss, TimeSampling


@configurable
class ClassifierLoss:
    """Cross-entropy of a noisy classifier p_phi(y | x_t, t) on x_t ~ q(x_t | x_0), with t drawn as SimpleLoss draws it
    (Dhariwal & Nichol 2021, sec. 4.1): `loss(classifier, x0, labels, generator) -> per-example loss`."""

    def __init__(self, t_sampling: TimeSampling = "uniform"):
        self.times = SimpleLoss(t_sampling)

    def __call__(self, classifier, x0: torch.Tensor, cond=None, generator: Generator = None) -> torch.Tensor:
        labels = labels_of(cond, "ClassifierLoss")
        process = classifier.process
        t = self.times.sample_t(process, x0.shape[0], generator, x0.device)
        x_t = process.perturb(x0, t, generator)
        return torch.nn.functional.cross_entropy(classifier(x_t, t).float(), labels.long(), reduction="none")


@configurable
class CLIPLoss:
    """CLIP's symmetric contrastive loss (Radford et al. 2021, Fig. 3) on noised images x_t ~ q(x_t | x_0), t drawn as
    SimpleLoss draws it: GLIDE's noised CLIP (Nichol et al. 2022, sec. 2.4). Captions repeat in a small vocabulary
    ('a seven' many times a batch), so every example with the same tokens is a positive, weighted equally: the
    target of row i is uniform over the batch's copies of caption i. The negatives are the batch (of a rank's
    micro-batch under torchrun or grad_accum). `loss(clip, x0, cond, generator) -> per-example loss`."""

    def __init__(self, t_sampling: TimeSampling = "uniform"):
        self.times = SimpleLoss(t_sampling)

    def __call__(self, clip, x0: torch.Tensor, cond=None, generator: Generator = None) -> torch.Tensor:
        c = Cond.of(cond)
        if c is None or c.tokens is None:
            raise ValueError("CLIPLoss: needs the captions' tokens (Cond.tokens) of the batch")
        process = clip.process
        t = self.times.sample_t(process, x0.shape[0], generator, x0.device)
        x_t = process.perturb(x0, t, generator)
        logits = clip.net.scale * clip.image(x_t, t) @ clip.net.text(c.tokens).T  # (B images, B captions)
        same = (c.tokens[:, None, :] == c.tokens[None, :, :]).all(-1).float()
        target = same / same.sum(1, keepdim=True)
        by_image = -(target * torch.log_softmax(logits, 1)).sum(1)
        by_text = -(target * torch.log_softmax(logits.T, 1)).sum(1)
        return (by_image + by_text) / 2
