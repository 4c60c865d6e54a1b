"""Diffusion recovery likelihood (Gao et al. 2021): a sequence of conditional energy models
p(x_{t-1} | x_t) proportional to exp(f(y, t) - ||x_t - y||^2 / (2 sigma_t^2)), y = a_t x_{t-1}, one energy network shared
over the levels, trained by maximising the recovery likelihood with short-run Langevin chains, sampled by running the
levels from the prior down."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..conditioning import Cond
from ..config import configurable, require
from ..utils import Generator, rand, randn
from .ddgan import real_pair, transition


@dataclass(frozen=True)
class LangevinChain:
    """K steps of Langevin dynamics with step size s_t = b sigma_t at level t (Gao et al. 2021, sec. 3.4)."""
    steps: int
    b: float

    def __post_init__(self):
        require(isinstance(self.steps, int) and not isinstance(self.steps, bool) and self.steps >= 1,
                "langevin_steps", "a positive integer (Langevin steps per level)", self.steps)
        require(self.b > 0, "step_size", "a positive number b (the Langevin step is b sigma_t)", self.b)


@configurable
class RecoveryEBM(nn.Module):
    """The energy network `net(x, c_noise, cond) -> (B, 1)` of every level of a discrete VP process, with the chain it
    is trained and sampled with. The network's output is f~ = s_t^2 f, the energy scaled by the Langevin step
    (Gao et al. 2021, sec. 3.4), so that a step moves x by grad f~ / 2 at every level."""

    only_samplers = ("recovery",)  # an energy model has no denoiser: the other samplers cannot use it

    def __init__(self, net: nn.Module, process, langevin_steps: int = 30, step_size: float = 0.0141):
        super().__init__()
        chain = LangevinChain(langevin_steps, float(step_size))
        if process.grid_step == 0 or not hasattr(process, "betas"):
            raise ValueError(f"objective: recovery likelihood learns p(x_(t-1) | x_t) over the levels of a discrete "
                             f"process; it needs process.kind ddpm, not {type(process).__name__}")
        if process.T < 2:
            raise ValueError(f"process.T: a recovery-likelihood EBM needs at least 2 levels (one conditional energy "
                             f"model per level below the prior), got T={process.T}")
        self.net, self.process, self.chain = net, process, chain

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        """f~(x, t) = D net(x, t) per example, (B,), for data of D numbers; only the class label of `cond` is read.

        The factor D makes the network's output an energy per number, so that its gradient in each number, the
        chain's drift, does not shrink as D grows: on MNIST-5k (D = 784), 300 steps gave FD 9.5 with it and 54 (the
        chain left the noise as it was) without; on 2-D data it is a factor 2."""
        c = Cond.of(cond)
        labels = None if c is None or c.label is None else Cond(label=c.label)
        t = torch.as_tensor(t, dtype=torch.float64, device=x.device).expand(x.shape[0])
        return self.net(x, self.process.net_time(t), labels).reshape(-1) * x[0].numel()


def recover(energy, process, x_t: torch.Tensor, t: torch.Tensor, chain: LangevinChain, *, cond=None,
            generator: Generator = None, noise_scale: float = 1.0) -> torch.Tensor:
    """x_{t-1} ~ p(x_{t-1} | x_t) by `chain.steps` Langevin steps on log p = f~(x, t) / s_t^2 - ||x_t - a_t x||^2 /
    (2 sigma_t^2), s_t = b sigma_t, started at x_t (Gao et al. 2021, eq. 11-12):
    x <- x + grad f~ / 2 + b^2 a_t (x_t - a_t x) / 2 + s_t eps.

    The chain runs on x_{t-1} = y / a_t itself rather than on the paper's y: the same model, preconditioned so that
    every level of a VP process is at unit scale (on y the top level must shrink by a_T, 1/44 at T = 6, and dividing
    by a_T multiplies its error as much). `energy(x, t, cond)` is the network f~ (a RecoveryEBM, maybe counted)."""
    t = torch.as_tensor(t, dtype=torch.float64, device=x_t.device).expand(x_t.shape[0])
    a, sigma = transition(process, t, t - 1, x_t)
    step = chain.b * sigma
    x = x_t.detach()
    for _ in range(chain.steps):
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            grad = torch.autograd.grad(energy(x, t, cond).sum(), x)[0]
        noise = randn(x.shape, generator, device=x.device, dtype=x.dtype)
        x = x.detach() + 0.5 * grad + 0.5 * chain.b**2 * a * (x_t - a * x.detach()) + noise_scale * step * noise
    return x.detach()


@configurable
class RecoveryLoss:
    """Maximum recovery likelihood (Gao et al. 2021, eq. 9-10): w_t (f~(x-, t) - f~(x+, t)), where x+ = x_{t-1} of a
    forward pair (x_{t-1}, x_t), t ~ U{0..T-1}, and x- the short-run chain's sample from x_t; w_t = sigma_0 / sigma_t,
    the paper's weight of the levels. Its gradient is that of -log p(x+ | x_t) with the chain's samples for the
    normaliser. `langevin_steps` K and `step_size` b make the training chain (K = 30, b^2 = 2e-4 as in the paper); the
    recipe gives the model the same chain to sample with."""

    term_names = ("positive", "negative")

    def __init__(self, langevin_steps: int = 30, step_size: float = 0.0141):
        self.chain = LangevinChain(langevin_steps, float(step_size))

    def __call__(self, model: RecoveryEBM, x0: torch.Tensor, cond=None, generator: Generator = None):
        return self.terms(model, x0, cond, generator)["loss"]

    def terms(self, model: RecoveryEBM, x0: torch.Tensor, cond=None, generator: Generator = None) -> dict:
        if not isinstance(model, RecoveryEBM):
            raise ValueError(f"objective recovery: trains a RecoveryEBM (an energy network over the levels), not a "
                             f"{type(model).__name__}")
        process = model.process
        T = int(round(process.t_max)) + 1
        t = (rand((x0.shape[0],), generator, dtype=torch.float64) * T).floor().clamp(max=T - 1).to(x0.device)
        x_s, x_t = real_pair(process, x0, t, t - 1, generator)
        negative = recover(model, process, x_t, t, self.chain, cond=cond, generator=generator)
        sigma = process.transition_variance(t, t - 1).sqrt()
        sigma_0 = process.transition_variance(torch.zeros_like(t), torch.full_like(t, -1.0)).sqrt()
        w = (sigma_0 / sigma).to(x0.dtype)
        pos, neg = model(x_s, t, cond), model(negative, t, cond)
        return {"loss": w * (neg - pos), "positive": pos.detach(), "negative": neg.detach()}
