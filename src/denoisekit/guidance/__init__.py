"""Guidance as denoiser wrappers: classifier-free guidance, classifier guidance (score and mean forms), dynamic
thresholding; and the noisy classifier p_phi(y | x_t, t)."""
from .classifier import NoisyClassifier
from .wrappers import ClassifierFreeGuidance, ClassifierGuidance, DenoiserWrapper, DynamicThresholding, from_x0

__all__ = ["ClassifierFreeGuidance", "ClassifierGuidance", "DenoiserWrapper", "DynamicThresholding",
           "NoisyClassifier", "from_x0"]
