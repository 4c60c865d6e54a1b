"""The reverse SDE in the process's own coordinates (Song et al. 2021): one `reverse_drift` for every process through
`process.sde(t)`, Euler-Maruyama, the reverse-diffusion predictor, the Langevin corrector and their predictor-corrector
combinations (Alg. 1-3 of app. G)."""
from __future__ import annotations

import math
from typing import Callable, Literal, Optional

import torch

from ..config import require
from ..utils import Generator
from .base import Grid, check_times, noise_like, steps_of

Predictor = Literal["reverse_diffusion", "euler_maruyama", "none"]
Corrector = Literal["langevin", "none"]


def score_of(pred, sigma) -> torch.Tensor:
    """grad log p_t(x) = -eps / sigma (Tweedie)."""
    return -pred.eps / sigma


def drift(f: float, g2: float, x: torch.Tensor, score: torch.Tensor, probability_flow: bool = False) -> torch.Tensor:
    """f x - c g^2 score: the reverse SDE's drift (Song et al. 2021, eq. 6, c = 1) or the probability-flow ODE's
    (eq. 13, c = 1/2)."""
    return f * x - (0.5 if probability_flow else 1.0) * g2 * score


def reverse_drift(process, denoiser, x: torch.Tensor, t, *, cond=None, probability_flow: bool = False):
    """(`drift` at a time t, prediction), for any process through process.sde(t)."""
    t = torch.as_tensor(t, dtype=torch.float64, device=x.device)
    f, g2 = process.sde(t)
    pred = denoiser(x, t.to(x.dtype).expand(x.shape[0]), cond)
    return drift(float(f), float(g2), x, score_of(pred, float(process.sigma(t))), probability_flow), pred


def euler_step(denoiser, x: torch.Tensor, t, s, *, cond=None):
    """One Euler step of the probability-flow ODE dx/dt = f x - 1/2 g^2 score (Song et al. 2021, eq. 13) in the
    process's own coordinates, from t to s per example, differentiable. Returns (x_s, the prediction at t)."""
    b = x.shape[0]
    process = denoiser.process
    t = torch.as_tensor(t, dtype=torch.float64, device=x.device).expand(b)
    s = torch.as_tensor(s, dtype=torch.float64, device=x.device).expand(b)
    shape = (b,) + (1,) * (x.ndim - 1)
    f, g2 = (v.reshape(shape).to(x.dtype) for v in process.sde(t))
    sigma, dt = (v.reshape(shape).to(x.dtype) for v in (process.sigma(t), s - t))
    pred = denoiser(x, t, cond)
    return x + dt * drift(f, g2, x, score_of(pred, sigma), probability_flow=True), pred


def langevin_correct(grid: Grid, x: torch.Tensor, i: int, snr: float, alpha: float, generator: Generator):
    """One Langevin step at t_i, x <- x + eps_i score + sqrt(2 eps_i) z, with the step of the target signal-to-noise
    ratio (Song et al. 2021, Alg. 5), eps_i = 2 alpha (snr |z| / |score|)^2, taken at the norms' expectations
    |z|^2 = d and |score|^2 = d / sigma_t^2: eps_i = 2 alpha (snr sigma_t)^2. In high dimension the norms concentrate
    and this is Alg. 5; in low dimension the ratio of the sampled norms has no mean (occasional huge steps), and
    score_sde's batch average would tie each sample to its batch."""
    pred = grid.denoise_x(x, i)
    score = score_of(pred, grid._sigma[i])
    step = 2 * alpha * (snr * grid._sigma[i]) ** 2
    return x + step * score + (2 * step).sqrt() * noise_like(x, generator), pred


@torch.no_grad()
def pc_sample(denoiser, x_T: torch.Tensor, times: torch.Tensor, *, predictor: Predictor = "reverse_diffusion",
              corrector: Corrector = "langevin", snr: float = 0.16, corrector_steps: int = 1, cond=None,
              generator: Generator = None, callback: Optional[Callable] = None, progress: bool = False):
    """Predictor-corrector sampling (Song et al. 2021, Alg. 1): at each time, `corrector_steps` Langevin steps at the
    target `snr`, then one predictor step to the next time; the last step, to the data, is the denoising step x = D.

    predictor 'reverse_diffusion' (eq. 47): x_s = x_t - (alpha_t/alpha_s - 1) x_t + G^2 score + G z with G^2 the
    forward transition's variance sigma^2_{t|s}; 'euler_maruyama': x_s = x_t + (f x_t - g^2 score)(s - t) +
    g sqrt(t - s) z; 'none': the corrector alone (annealed Langevin over the times). corrector 'langevin' or 'none'.
    """
    require(predictor in ("reverse_diffusion", "euler_maruyama", "none"), "predictor",
            "'reverse_diffusion', 'euler_maruyama' or 'none'", predictor)
    require(corrector in ("langevin", "none"), "corrector", "'langevin' or 'none'", corrector)
    require(isinstance(snr, (int, float)) and not isinstance(snr, bool) and snr > 0, "snr", "a positive number", snr)
    require(isinstance(corrector_steps, int) and not isinstance(corrector_steps, bool) and corrector_steps >= 1,
            "corrector_steps", "a positive integer", corrector_steps)
    if predictor == "none" and corrector == "none":
        raise ValueError("predictor: with corrector 'none' too, nothing would move the samples")
    times = check_times(times)
    process = denoiser.process
    grid = Grid(denoiser, times, x_T, cond)
    t, s = times[:-1], times[1:]
    ratio = (process.alpha(t) / process.alpha(s)).tolist()                  # alpha_{t|s}
    g2_step = process.transition_variance(t, s).tolist()                    # G^2 of the forward step s -> t
    f, g2 = (v.tolist() for v in process.sde(t))
    x = x_T
    for i in steps_of(grid, progress):
        pred = None
        if corrector == "langevin":
            for _ in range(corrector_steps):
                x, pred = langevin_correct(grid, x, i, snr, ratio[i] ** 2, generator)
        if grid.levels[i + 1] == 0:                     # the data: denoise
            x = grid.denoise_x(x, i).x0
        elif predictor != "none":
            pred = grid.denoise_x(x, i)
            score = score_of(pred, grid._sigma[i])
            if predictor == "reverse_diffusion":
                x = (2 - ratio[i]) * x + g2_step[i] * score
                x.add_(noise_like(x, generator), alpha=math.sqrt(g2_step[i]))
            else:
                dt = float(s[i] - t[i])
                x = x + drift(f[i], g2[i], x, score) * dt
                x.add_(noise_like(x, generator), alpha=math.sqrt(g2[i] * -dt))
        if callback is not None:
            callback(i, grid.t[i], x, pred)
    return x


@torch.no_grad()
def em_sample(denoiser, x_T: torch.Tensor, times: torch.Tensor, *, cond=None, generator: Generator = None,
              callback: Optional[Callable] = None, progress: bool = False):
    """Euler-Maruyama on the reverse SDE dx = [f x - g^2 score] dt + g dw-bar (Song et al. 2021, eq. 6) in the
    process's own coordinates: `pc_sample` with predictor 'euler_maruyama' and no corrector."""
    return pc_sample(denoiser, x_T, times, predictor="euler_maruyama", corrector="none", cond=cond,
                     generator=generator, callback=callback, progress=progress)
