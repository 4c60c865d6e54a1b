"""Denoiser networks, the noisy classifier of classifier guidance, a DDGAN's discriminator, and text conditioning's
encoders (the U-Net's text encoder, GLIDE's noised CLIP)."""
from .classifier import EncoderClassifier, EncoderDiscriminator
from .clip import NoisyCLIPNet
from .mlp import MLP
from .text import CrossAttention, PretrainedTextEncoder, TextEncoder
from .unet import UNet

__all__ = ["CrossAttention", "EncoderClassifier", "EncoderDiscriminator", "MLP", "NoisyCLIPNet", "PretrainedTextEncoder",
           "TextEncoder", "UNet"]
