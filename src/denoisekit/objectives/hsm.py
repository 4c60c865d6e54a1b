"""Hybrid score matching for critically-damped Langevin diffusion (Dockhorn, Vahdat & Kreis, ICLR 2022, sec. 3.2):
the initial velocity marginalised, the network regressing the velocity noise eps_v."""
from __future__ import annotations

from typing import Literal

import torch

from ..conditioning import Cond
from ..config import configurable
from ..utils import Generator, rand, randn

Weighting = Literal["eps", "likelihood"]


@configurable
class HSMLoss:
    """E_{t ~ U[t_eps, 1], x0, eps} lambda(t) |eps_v - eps_theta(u_t, t)|^2 with u_t ~ q(u_t | x0) (v0 ~ N(0, gamma M)
    marginalised; eq. 11-13). weighting 'eps': lambda = 1 (the paper's reweighted objective, for sample quality);
    'likelihood': lambda = 2 Gamma beta ell_t^2 = g(t)^2 ell_t^2, the score error in the maximum-likelihood weighting."""

    def __init__(self, weighting: Weighting = "eps"):
        if weighting not in ("eps", "likelihood"):
            raise ValueError(f"weighting: expected 'eps' or 'likelihood', got {weighting!r}")
        self.weighting = weighting

    def __call__(self, denoiser, x0: torch.Tensor, cond=None, generator: Generator = None) -> torch.Tensor:
        process = denoiser.process
        if not hasattr(process, "noise_scale"):
            raise ValueError(f"objective: hybrid score matching trains on the state (x, v) of process cld, not "
                             f"{type(process).__name__}")
        t = (process.t_eps + rand((x0.shape[0],), generator, dtype=torch.float64) * (process.t_max - process.t_eps))
        t = t.to(x0.device)
        eps = randn((x0.shape[0], *process.state_shape(x0.shape[1:])), generator, device=x0.device, dtype=x0.dtype)
        u = process.q_sample(x0, t, eps)
        out = denoiser.net_output(u, t, Cond.of(cond))
        err = (out.float() - eps.chunk(2, dim=1)[1].float()) ** 2
        err = err.reshape(err.shape[0], -1).mean(1)
        if self.weighting == "likelihood":
            ell = process.noise_scale(t)
            err = err * (2 * process.damping * process.beta * ell**2).to(err.dtype)
        return err
