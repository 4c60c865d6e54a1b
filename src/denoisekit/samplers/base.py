"""What every sampler shares: the step grid with its coefficients computed once, before the loop.

ODE and SDE solvers work in x~ = x / alpha with the noise level s = sigma / alpha (Karras et al. 2022, sec. 3), where
every process x_t = alpha x_0 + sigma eps becomes x~ = x_0 + s eps and the probability-flow ODE is
dx~/ds = (x~ - D(x~, s)) / s = eps (DESIGN.md, "one ODE/SDE view"). Solvers written in log-SNR use lambda = -log s.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from tqdm.auto import tqdm

from ..denoiser import Prediction
from ..utils import Generator, randn


def check_times(times, descending: bool = True) -> torch.Tensor:
    """A strictly monotone 1-D float64 tensor of at least 2 times, in the direction asked for."""
    times = torch.as_tensor(times, dtype=torch.float64)
    way = "descending" if descending else "ascending"
    if times.ndim != 1 or len(times) < 2:
        raise ValueError(f"times: expected a strictly {way} 1-D sequence of at least 2 times")
    d = times[1:] - times[:-1]
    if not bool((d < 0).all() if descending else (d > 0).all()):
        raise ValueError(f"times: expected a strictly {way} 1-D sequence of at least 2 times")
    return times


class Grid:
    """The times t_i of a sampler with alpha_i, sigma_i, s_i = sigma_i/alpha_i and lambda_i = -log s_i precomputed.

    Python floats (`alphas`, `levels`, `lams`) serve coefficient arithmetic; tensors in x's dtype serve the network.
    """

    def __init__(self, denoiser, times, x: torch.Tensor, cond=None, descending: bool = True):
        self.denoiser, self.cond, self.process = denoiser, cond, denoiser.process
        t = check_times(times, descending).to(x.device)
        alpha, sigma = self.process.alpha(t), self.process.sigma(t)
        self.t, self.n, self.dtype = t, len(t) - 1, x.dtype
        self.alphas: list[float] = alpha.tolist()
        self.levels: list[float] = (sigma / alpha).tolist()
        self.lams: list[float] = [-math.log(s) if s > 0 else math.inf for s in self.levels]
        # per step, ready for the network: t expanded to the batch, alpha and sigma broadcastable, in x's dtype
        shape = (1,) * x.ndim
        self._t = list(t.to(x.dtype)[:, None].expand(-1, x.shape[0]).unbind(0))
        self._alpha = list(alpha.to(x.dtype).reshape(-1, *shape).unbind(0))
        self._sigma = list(sigma.to(x.dtype).reshape(-1, *shape).unbind(0))

    def denoise_x(self, x: torch.Tensor, i: int) -> Prediction:
        """The denoiser at (x, t_i), in the process's own coordinates."""
        return self.denoiser(x, self._t[i], self.cond, alpha=self._alpha[i], sigma=self._sigma[i])

    def denoise(self, x_tilde: torch.Tensor, i: int) -> Prediction:
        """D(x~, s_i): the denoiser at grid point i, given x~ = x / alpha_i (x0 and eps are the same in both)."""
        return self.denoise_x(x_tilde * self.alphas[i], i)

    def denoise_at_time(self, x_tilde: torch.Tensor, t: torch.Tensor) -> Prediction:
        """D(x~, s(t)) off the grid (a midpoint, a churned level)."""
        t = torch.as_tensor(t, dtype=torch.float64, device=x_tilde.device)
        a, s = self.process.alpha(t).to(self.dtype), self.process.sigma(t).to(self.dtype)
        return self.denoiser(x_tilde * a, t.to(self.dtype), self.cond, alpha=a, sigma=s)

    def denoise_at_level(self, x_tilde: torch.Tensor, level: float) -> Prediction:
        """D(x~, s) at a noise level s off the grid, through the process's inverse t(s)."""
        return self.denoise_at_time(x_tilde, self.process.t_from_noise_level(torch.tensor(level, dtype=torch.float64)))


def step_coefficients(process, x: torch.Tensor, t, s):
    """Per-example (t, s, alpha_t, alpha_s, level_t, level_s) for a teacher step from t to s: times as (B,) tensors in
    float64, the rest broadcastable against x in its dtype (level = sigma / alpha, the noise level of x~ = x / alpha)."""
    b = x.shape[0]
    t = torch.as_tensor(t, dtype=torch.float64, device=x.device).expand(b)
    s = torch.as_tensor(s, dtype=torch.float64, device=x.device).expand(b)
    shape = (b,) + (1,) * (x.ndim - 1)
    out = [process.alpha(t), process.alpha(s), process.noise_level(t), process.noise_level(s)]
    return (t, s, *(v.reshape(shape).to(x.dtype) for v in out))


def steps_of(grid: Grid, progress: bool, desc: str = "sampling"):
    """The step indices 0..n-1, with a tqdm bar when asked for."""
    return tqdm(range(grid.n), desc=desc, leave=False) if progress else range(grid.n)


def report(callback: Optional[Callable], grid: Grid, i: int, x_tilde: torch.Tensor, pred: Prediction) -> None:
    """callback(i, t_i, x_{i+1}, pred) after step i, with x back in the process's coordinates."""
    if callback is not None:
        callback(i, grid.t[i], x_tilde * grid.alphas[i + 1], pred)


def noise_like(x: torch.Tensor, generator: Generator) -> torch.Tensor:
    """Standard normal noise shaped like x, from one generator or one per sample."""
    return randn(x.shape, generator, device=x.device, dtype=x.dtype)


def linear_multistep(grid: Grid, x_T: torch.Tensor, plan, *, use: str = "x0", corrector=None, noise=None,
                     generator: Generator = None, callback=None, progress: bool = False) -> torch.Tensor:
    """Run a multistep solver whose steps are linear: x~_{i+1} = a_i x~_i + sum_j b_ij m_{i-j} (m = x0 or eps).

    `plan[i] = (a, [b_0, b_1, ...])` against the newest-first history of model outputs; `corrector[i]`, if given,
    re-does step i once the model has been evaluated at its result (UniPC's corrector: the new output is m_{i+1},
    the coefficient list then starts with it); `noise[i]` adds that much fresh noise after step i (SDE solvers).
    Every coefficient was computed before the loop, in float64.
    """
    x = x_T / grid.alphas[0]
    history: list[torch.Tensor] = []
    x_prev = None
    for i in steps_of(grid, progress):
        pred = grid.denoise(x, i)
        m = pred.x0 if use == "x0" else pred.eps
        history.insert(0, m)
        if corrector is not None and i > 0 and corrector[i - 1] is not None:
            x = _combine(x_prev, *corrector[i - 1], history)
        x_prev = x
        del history[6:]
        x = _combine(x, *plan[i], history)
        if noise is not None and noise[i] > 0:
            x.add_(noise_like(x, generator), alpha=noise[i])
        report(callback, grid, i, x, pred)
    return x * grid.alphas[-1]


def _combine(x: torch.Tensor, a: float, bs, history) -> torch.Tensor:
    """a x + sum_j b_j history[j], as few tensor operations as possible."""
    out = x * a if a != 1.0 else x.clone()
    for b, m in zip(bs, history):
        if b != 0.0:
            out.add_(m, alpha=b)
    return out
