"""Samplers: stateless functions `sampler(denoiser, x_T, times, *, generator, callback)`."""
from .ddpm import ddpm_sample, ddpm_step

SAMPLERS = {"ddpm": ddpm_sample}

__all__ = ["SAMPLERS", "ddpm_sample", "ddpm_step"]
