"""Evaluation: Frechet distance, precision/recall and a classifier score in a reference classifier's features,
Inception FID from local weights, sliced Wasserstein distance and MMD for low-dimensional data."""
from .classifier import FeatureCNN, ReferenceClassifier, cache_dir, reference_classifier, train_classifier
from .evaluator import Evaluator, classifier_score, evaluate, format_report
from .frechet import frechet_distance, frechet_distance_features, gaussian_stats
from .inception import FIDInception, load_fid_inception
from .lowdim import mmd, on_data_fraction, sliced_wasserstein
from .manifold import precision_recall
from .samples import load_samples

__all__ = ["Evaluator", "FIDInception", "FeatureCNN", "ReferenceClassifier", "cache_dir", "classifier_score",
           "evaluate", "format_report", "frechet_distance", "frechet_distance_features", "gaussian_stats",
           "load_fid_inception", "mmd", "on_data_fraction", "precision_recall", "reference_classifier",
           "sliced_wasserstein", "train_classifier", "load_samples"]
