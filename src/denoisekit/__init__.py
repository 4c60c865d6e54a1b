"""denoisekit: denoising-diffusion and score-based generative models, checkable against the math."""
from .analytic import GaussianMixture
from .conditioning import Cond
from .data import ArrayDataset, load_dataset, make_toy
from .denoiser import Denoiser, Prediction
from .guidance import ClassifierFreeGuidance, ClassifierGuidance, DynamicThresholding
from .likelihood import ode_log_likelihood, variational_bound
from .models import LoadedModel, load_denoiser, load_model
from .nets import MLP, UNet
from .objectives import DSMLoss, ESMLoss, FlowMatchingLoss, HybridLoss, SimpleLoss, SSMLoss, VLBLoss
from .processes import VESDE, VPSDE, DiscreteVP, FlowProcess, NoiseLadder, NoiseProcess, Process, SubVPSDE
from .recipes import RunConfig, train_run
from .samplers import (SAMPLERS, SCHEDULES, ddim_interpolate, ddim_invert, ddim_step, ddpm_sample, ddpm_step,
                       euler_step, generate, heun_step, sample, sampling_times)
from .train import TrainConfig, Trainer
from . import interop  # noqa: F401  (registers the diffusers opener with load_model)

__version__ = "0.1.0"
__all__ = ["ArrayDataset", "ClassifierFreeGuidance", "ClassifierGuidance", "Cond", "DSMLoss", "Denoiser", "DiscreteVP",
           "DynamicThresholding", "ESMLoss", "FlowMatchingLoss", "FlowProcess", "GaussianMixture", "HybridLoss",
           "LoadedModel", "MLP", "NoiseLadder", "NoiseProcess", "Prediction", "Process", "RunConfig", "SAMPLERS",
           "SCHEDULES", "SSMLoss", "SimpleLoss", "SubVPSDE", "TrainConfig", "Trainer", "UNet", "VESDE", "VLBLoss",
           "VPSDE", "ddim_interpolate", "ddim_invert", "ddim_step", "ddpm_sample", "ddpm_step", "euler_step",
           "generate", "heun_step", "load_dataset", "load_denoiser", "load_model", "make_toy", "ode_log_likelihood",
           "sample", "sampling_times", "train_run", "variational_bound"]
