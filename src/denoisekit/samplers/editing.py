"""Zero-shot editing with any trained model: inpainting by replacement (Song et al. 2021, app. I.2), with RePaint's
resampling (Lugmayr et al. 2022), and SDEdit's image-to-image from a noise level (Meng et al. 2022)."""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ..utils import Generator, append_dims
from .base import check_times, noise_like
from .ddpm import ddpm_step
from .entry import check_request
from .registry import DEFAULT_SCHEDULES, get_sampler
from .times import sampling_times


@torch.no_grad()
def inpaint(denoiser, x_known: torch.Tensor, mask: torch.Tensor, times: torch.Tensor, *, resample: int = 1,
            cond=None, generator: Generator = None, progress: bool = False) -> torch.Tensor:
    """Fill the unknown part (mask 0) of x_known with ancestral DDPM over `times`: after each step from t to s the known
    part (mask 1) is replaced by a draw of q(x_s | x_0 = x_known); `resample` r > 1 sends the result back to t through
    q(x_t | x_s) and repeats the step, r times in all (RePaint's jumps of one step), so the filled part has time to
    agree with the known one. The known part of the result is x_known exactly."""
    if isinstance(resample, bool) or not isinstance(resample, int) or resample < 1:
        raise ValueError(f"resample: expected a positive integer, got {resample!r}")
    mask = torch.as_tensor(mask, dtype=x_known.dtype, device=x_known.device).expand_as(x_known)
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("mask: expected 0 (to fill) and 1 (known) only")
    process, times = denoiser.process, check_times(times).to(x_known.device)
    b, n = x_known.shape[0], x_known.ndim
    x = process.prior_sample(x_known.shape, generator, device=x_known.device, dtype=x_known.dtype)
    steps = range(len(times) - 1)
    for i in tqdm(steps, desc="inpainting", leave=False) if progress else steps:
        t, s = times[i].expand(b), times[i + 1].expand(b)
        for r in range(resample):
            x_s = ddpm_step(denoiser, x, t, s, noise_like(x, generator), cond=cond)[0]
            known = process.q_sample(x_known, s, noise_like(x, generator))
            x_s = mask * known + (1 - mask) * x_s
            if r < resample - 1:  # back to t: x_t = alpha_{t|s} x_s + sigma_{t|s} z
                a_ts = append_dims(process.alpha(t) / process.alpha(s), n).to(x.dtype)
                std = append_dims(process.transition_variance(t, s).clamp(min=0).sqrt(), n).to(x.dtype)
                x = a_ts * x_s + std * noise_like(x, generator)
        x = x_s
    return mask * x_known + (1 - mask) * x


@torch.no_grad()
def sdedit(denoiser, x_guide: torch.Tensor, strength: float, *, steps: int = 50, sampler: str = "ddpm",
           schedule=None, cond=None, generator: Generator = None, progress: bool = False, **options) -> torch.Tensor:
    """SDEdit (Meng et al. 2022, Alg. 1): x_guide noised by q(x_t0 | x_0) to the time t0 at `strength` of a schedule of
    round(steps / strength) steps (1: from the prior, nothing of the guide's detail kept), then the last `steps`
    steps of that schedule by `sampler`: a sample that keeps the guide's coarse layout and looks like the data."""
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 < strength <= 1:
        raise ValueError(f"strength: expected a number in (0, 1] (the share of the noise schedule to redo), got "
                         f"{strength!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected a positive integer, got {steps!r}")
    check_request(sampler, schedule, options, process=denoiser.process)
    times = sampling_times(denoiser.process, max(steps, round(steps / strength)),
                           schedule or DEFAULT_SCHEDULES.get(sampler, "karras"))[-(steps + 1):].to(x_guide.device)
    x_t = denoiser.process.q_sample(x_guide, times[0].expand(x_guide.shape[0]), noise_like(x_guide, generator))
    return get_sampler(sampler)(denoiser, x_t, times, cond=cond, generator=generator, progress=progress, **options)
