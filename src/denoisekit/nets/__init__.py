"""Denoiser networks, the noisy classifier of classifier guidance and a DDGAN's discriminator."""
from .classifier import EncoderClassifier, EncoderDiscriminator
from .mlp import MLP
from .unet import UNet

__all__ = ["EncoderClassifier", "EncoderDiscriminator", "MLP", "UNet"]
