"""Samplers: stateless functions `sampler(denoiser, x_T, times, *, cond, generator, callback, progress, **options)`,
and the one entry point `sample(denoiser, x_T, sampler=NAME, steps=N, schedule=NAME, **options)`."""
from __future__ import annotations

from .auto import auto_schedule
from .consistency import consistency_inpaint, consistency_sample
from .ddgan import ddgan_sample
from .ddim import ddim_interpolate, ddim_invert, ddim_sample, ddim_step, slerp
from .ddpm import ddpm_sample, ddpm_step
from .dpm_solver import dpmpp_2m_sample, dpmpp_2m_sde_sample, dpmpp_2s_sample, dpmpp_3m_sample
from .editing import inpaint, sdedit
from .entry import CountingDenoiser, check_request, sample
from .euler import euler_maruyama_sample, euler_sample, heun_sample, heun_step
from .generate import balanced_labels, generate
from .langevin import ald_sample, langevin_sample
from .multistep import deis_sample, ipndm_sample, pndm_sample
from .registry import (COMMON, DEFAULT_SCHEDULES, SAMPLERS, check_family, check_options, get_sampler,
                       register_sampler, sampler_options)
from .recovery import recovery_sample
from .reflow import ODE_SAMPLERS, reflow_pairs, straightness
from .rk45 import rk45_sample
from .sde import em_sample, euler_step, pc_sample, reverse_drift
from .times import SCHEDULES, TIME_SCHEDULES, karras_levels, sampling_times, times_from_levels
from .unipc import unipc_sample

__all__ = ["COMMON", "CountingDenoiser", "DEFAULT_SCHEDULES", "ODE_SAMPLERS", "SAMPLERS", "SCHEDULES", "TIME_SCHEDULES",
           "ald_sample", "auto_schedule", "balanced_labels", "check_family", "check_options", "check_request",
           "consistency_inpaint", "consistency_sample", "ddgan_sample", "ddim_interpolate", "ddim_invert",
           "ddim_sample", "ddim_step", "ddpm_sample", "ddpm_step", "deis_sample", "dpmpp_2m_sample",
           "dpmpp_2m_sde_sample", "dpmpp_2s_sample", "dpmpp_3m_sample", "em_sample", "euler_maruyama_sample",
           "euler_sample", "euler_step", "generate", "get_sampler", "heun_sample", "heun_step", "inpaint",
           "ipndm_sample", "karras_levels", "langevin_sample", "pc_sample", "pndm_sample", "recovery_sample",
           "reflow_pairs", "register_sampler", "reverse_drift", "rk45_sample", "sample", "sampler_options",
           "sampling_times", "sdedit", "slerp", "straightness", "times_from_levels", "unipc_sample"]
