"""denoisekit: denoising-diffusion and score-based generative models, checkable against the math."""
from .analytic import GaussianMixture
from .data import ArrayDataset, load_dataset, make_toy
from .denoiser import Denoiser, Prediction
from .likelihood import ode_log_likelihood, variational_bound
from .losses import HybridLoss, SimpleLoss, VLBLoss
from .nets import MLP, UNet
from .process import DiscreteVP, NoiseProcess
from .recipe import RunConfig, generate, load_denoiser, train_run
from .samplers import SAMPLERS, ddim_interpolate, ddim_invert, ddpm_sample, ddpm_step, sample
from .steps import SCHEDULES, sampling_times
from .train import TrainConfig, Trainer

__version__ = "0.1.0"
__all__ = ["ArrayDataset", "Denoiser", "DiscreteVP", "GaussianMixture", "HybridLoss", "MLP", "NoiseProcess",
           "Prediction", "RunConfig", "SAMPLERS", "SCHEDULES", "SimpleLoss", "TrainConfig", "Trainer", "UNet",
           "VLBLoss", "ddim_interpolate", "ddim_invert", "ddpm_sample", "ddpm_step", "generate", "load_dataset",
           "load_denoiser", "make_toy", "ode_log_likelihood", "sample", "sampling_times", "train_run",
           "variational_bound"]
