"""denoisekit: denoising-diffusion and score-based generative models, checkable against the math."""
from .data import ArrayDataset, load_dataset, make_toy
from .denoiser import Denoiser, Prediction
from .losses import SimpleLoss
from .nets import MLP, UNet
from .process import DiscreteVP, NoiseProcess
from .recipe import RunConfig, generate, load_denoiser, train_run
from .samplers import ddpm_sample, ddpm_step
from .steps import sampling_times
from .train import TrainConfig, Trainer

__version__ = "0.1.0"
__all__ = ["ArrayDataset", "Denoiser", "DiscreteVP", "MLP", "NoiseProcess", "Prediction", "RunConfig",
           "SimpleLoss", "TrainConfig", "Trainer", "UNet", "ddpm_sample", "ddpm_step", "generate",
           "load_dataset", "load_denoiser", "make_toy", "sampling_times", "train_run"]
