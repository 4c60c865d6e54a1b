"""One evaluator per data set: Frechet distance, classifier score, class histogram and precision/recall in the
reference classifier's features for images (plus Inception FID given local weights); SWD and MMD for vectors."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from ..images import atomic_save
from .classifier import cache_dir, data_hash, reference_classifier, split_indices
from .frechet import frechet_distance, gaussian_stats
from .inception import inception_features, inception_weights_path, load_fid_inception
from .lowdim import mmd, sliced_wasserstein
from .manifold import precision_recall


def classifier_score(logits: torch.Tensor) -> float:
    """The Inception-Score analogue exp(E_x KL(p(y|x) || p(y))) (Salimans et al. 2016), p(y) the mean of p(y|x)."""
    logp = torch.log_softmax(logits.double(), 1)
    log_py = torch.logsumexp(logp, 0) - torch.log(torch.tensor(float(len(logp)), dtype=torch.float64))
    return float(torch.exp((logp.exp() * (logp - log_py)).sum(1).mean()))


class Evaluator:
    """`Evaluator(dataset).evaluate(samples)` -> a dict of metrics; the reference side is computed once."""

    def __init__(self, dataset, *, device="cpu", cache: bool = True, cache_root: Optional[Path] = None,
                 inception_weights: Optional[str] = None, k: int = 3, seed: int = 0, progress: bool = True):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k: expected a positive number of neighbours for precision/recall, got {k!r}")
        self.dataset, self.k, self.seed, self.device = dataset, k, seed, torch.device(device)
        self.info: dict = {"data": dataset.name, "data_size": len(dataset)}
        a, b = split_indices(len(dataset), held_out=0.5, seed=seed)  # two disjoint halves of the data
        if not dataset.is_image:
            self.classifier = None
            self.reference = dataset.x.double()
            self.info["swd_data_halves"] = sliced_wasserstein(dataset.x[a], dataset.x[b])
            self.info["mmd_data_halves"] = mmd(dataset.x[a][:2000], dataset.x[b][:2000])
            return
        self.classifier = reference_classifier(dataset, cache=cache, root=cache_root, seed=seed, progress=progress)
        self.classifier.net.to(self.device)
        self.real_features, real_logits = self.classifier.features_and_logits(dataset.x)
        self.real_stats = gaussian_stats(self.real_features)
        self.class_freq = torch.bincount(dataset.y, minlength=dataset.num_classes).double() / len(dataset)
        self.info.update(classifier_accuracy=self.classifier.accuracy,
                         classifier=str(self.classifier.path) if self.classifier.path else "(not cached)",
                         fd_data_halves=frechet_distance(*gaussian_stats(self.real_features[a]),
                                                         *gaussian_stats(self.real_features[b])),
                         classifier_score_data=classifier_score(real_logits))
        self.inception = None
        path = inception_weights_path(inception_weights)
        if path is not None:
            self.inception = load_fid_inception(path, self.device)
            self.inception_real_stats = self._inception_reference(cache, cache_root, path)

    def _inception_reference(self, cache: bool, cache_root, weights: Path):
        """Inception statistics of the data set, cached beside the classifier (they take minutes on a CPU)."""
        key = data_hash(self.dataset.x, self.dataset.y if self.dataset.y is not None else torch.zeros(0))
        f = cache_dir(cache_root) / "inception" / f"{key[:16]}-{weights.stat().st_size}.pt"
        if cache and f.exists():
            return torch.load(f, weights_only=True)
        stats = gaussian_stats(inception_features(self.inception, self.dataset.x))
        if cache:
            atomic_save(f, lambda p: torch.save(stats, p))
        return stats

    def _check(self, samples: torch.Tensor) -> torch.Tensor:
        samples = torch.as_tensor(samples).detach().cpu().float()
        want = tuple(self.dataset.x.shape[1:])
        if tuple(samples.shape[1:]) != want:
            raise ValueError(f"samples: shape {tuple(samples.shape[1:])} per sample, but the data set "
                             f"{self.dataset.name!r} has {want}")
        if len(samples) <= self.k:
            raise ValueError(f"samples: need more than k={self.k} samples, got {len(samples)}")
        if not bool(torch.isfinite(samples).all()):
            raise ValueError("samples: they hold NaN or infinite values; the model or sampler diverged")
        return samples

    @torch.no_grad()
    def evaluate(self, samples: torch.Tensor, labels: Optional[torch.Tensor] = None) -> dict:
        """Metrics of samples (N, *data shape) in the data's [-1, 1] scale, with the reference figures beside them;
        with the `labels` the samples were asked for, also the reference classifier's class accuracy on them."""
        samples = self._check(samples)
        if labels is not None and (len(labels) != len(samples) or self.classifier is None):
            raise ValueError("labels: expected one label per sample, and a labelled image data set")
        n = len(samples)
        g = torch.Generator().manual_seed(self.seed + 1)
        if self.classifier is None:
            ref = self.reference[torch.randperm(len(self.reference), generator=g)[:max(n, 2)]]
            precision, recall = precision_recall(ref, samples, self.k)
            return {**self.info, "n": n, "swd": sliced_wasserstein(samples, self.reference),
                    "mmd": mmd(samples[:2000], ref[:2000]), "precision": precision, "recall": recall}
        feats, logits = self.classifier.features_and_logits(samples.clamp(-1, 1))
        real = self.real_features[torch.randperm(len(self.real_features), generator=g)[:n]]
        precision, recall = precision_recall(real, feats, self.k)
        hist = torch.bincount(logits.argmax(1), minlength=self.dataset.num_classes).double() / n
        out = {**self.info, "n": n, "fd": frechet_distance(*gaussian_stats(feats), *self.real_stats),
               "precision": precision, "recall": recall, "classifier_score": classifier_score(logits),
               "class_histogram": [round(float(h), 4) for h in hist],
               "class_tv": float((hist - self.class_freq).abs().sum() / 2)}
        if labels is not None:
            out["class_accuracy"] = float((logits.argmax(1).cpu() == labels.cpu()).double().mean())
        if n < 500:
            out["warning"] = (f"only {n} samples: precision/recall (k-NN radii widen as points thin out) and the "
                              f"Frechet distance (biased upwards by about 1/n) are unreliable below ~500")
        if self.inception is not None:
            out["inception_fid"] = frechet_distance(*gaussian_stats(inception_features(self.inception, samples)),
                                                    *self.inception_real_stats)
        return out


def evaluate(samples: torch.Tensor, dataset, **kwargs) -> dict:
    """Metrics of `samples` against `dataset` (an ArrayDataset); build an Evaluator to score several sample sets."""
    return Evaluator(dataset, **kwargs).evaluate(samples)


def format_report(metrics: dict) -> str:
    """A human-readable report, one metric per line."""
    lines = []
    for k, v in metrics.items():
        if isinstance(v, float):
            v = f"{v:.4g}"
        lines.append(f"{k:>24}: {v}")
    return "\n".join(lines)
