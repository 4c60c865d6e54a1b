"""Denoiser networks, and the noisy classifier of classifier guidance."""
from .classifier import EncoderClassifier
from .mlp import MLP
from .unet import UNet

__all__ = ["EncoderClassifier", "MLP", "UNet"]
