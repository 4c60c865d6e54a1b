"""Guidance as denoiser wrappers: classifier-free guidance, classifier guidance (score and mean forms), dynamic
thresholding; and the noisy classifier p_phi(y | x_t, t) and noised CLIP f(x_t, t) . g(c) they guide with."""
from .classifier import NoisyCLIP, NoisyClassifier
from .wrappers import ClassifierFreeGuidance, ClassifierGuidance, DenoiserWrapper, DynamicThresholding, from_x0

__all__ = ["ClassifierFreeGuidance", "ClassifierGuidance", "DenoiserWrapper", "DynamicThresholding",
           "NoisyCLIP", "NoisyClassifier", "from_x0"]
