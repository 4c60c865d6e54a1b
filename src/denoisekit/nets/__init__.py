"""Denoiser networks."""
from .mlp import MLP
from .unet import UNet

__all__ = ["MLP", "UNet"]
