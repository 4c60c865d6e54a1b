"""The noisy classifier's objective (Dhariwal & Nichol 2021, sec. 4.1)."""
from __future__ import annotations

import torch

from ..conditioning import labels_of
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
