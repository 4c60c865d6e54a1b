"""Denoising diffusion GANs (Xiao et al. 2022): a generator G(x_t, z, t) -> x0' whose x_{t-1} ~ q(x_{t-1} | x_t, x0')
models the multimodal reverse step of a few large steps, and a time-conditional discriminator D(x_{t-1}, x_t, t);
the two players as one module, and their adversarial loss as named phases for the generic trainer."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..conditioning import Cond, with_latent
from ..config import configurable, require
from ..denoiser import Denoiser
from ..samplers.ddpm import ddpm_step
from ..train import Phase
from ..utils import Generator, rand, randn


@configurable
class DDGAN(nn.Module):
    """The generator (a `Denoiser` whose network reads a latent z, prediction x0' = G(x_t, z, t)) and the
    discriminator (a network `(x, c_noise, cond) -> (B, 1)` on the pair x_{t-1}, x_t stacked on the first feature
    axis): one module, so the trainer checkpoints, resumes and averages both; samplers use `generator`."""

    def __init__(self, generator: Denoiser, discriminator: nn.Module):
        super().__init__()
        if not generator.latent_dim:
            raise ValueError("net.latent_dim: a DDGAN generator reads a latent z; set a positive size")
        self.generator = generator
        self.discriminator = discriminator

    @property
    def process(self):
        return self.generator.process

    def discriminate(self, x_s: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        """D(x_{t-1}, x_t, t): a logit of 'real' per example; only the class label of `cond` is read. At T = 1 (a plain
        GAN) D sees zeros for x_t: a real x_T is all but independent of x_0, so D could only learn the generator's
        dependence on its input, win outright and leave the generator no signal (measured on MNIST-5k)."""
        if getattr(self.process, "T", None) == 1:
            x_t = torch.zeros_like(x_t)
        c = Cond.of(cond)
        labels = None if c is None or c.label is None else Cond(label=c.label)
        return self.discriminator(torch.cat([x_s, x_t], dim=1), self.process.net_time(t), labels).reshape(-1)


def transition(process, t: torch.Tensor, s: torch.Tensor, like: torch.Tensor):
    """(alpha_{t|s}, sigma_{t|s}) of q(x_t | x_s) = N(alpha_{t|s} x_s, sigma_{t|s}^2), per example, shaped to broadcast
    against `like`."""
    shape = (-1,) + (1,) * (like.ndim - 1)
    a = (process.alpha(t) / process.alpha(s)).reshape(shape).to(like.dtype)
    return a, process.transition_variance(t, s).clamp(min=0).sqrt().reshape(shape).to(like.dtype)


def real_pair(process, x0: torch.Tensor, t: torch.Tensor, s: torch.Tensor, generator: Generator):
    """(x_s ~ q(x_s | x_0), x_t ~ q(x_t | x_s)) for s < t: a pair of the forward chain (Xiao et al. 2022, eq. 6)."""
    x_s = process.perturb(x0, s, generator)
    a, std = transition(process, t, s, x0)
    return x_s, a * x_s + std * randn(x0.shape, generator, device=x0.device, dtype=x0.dtype)


def fake_step(gen: Denoiser, x_t: torch.Tensor, t: torch.Tensor, s: torch.Tensor, cond, generator: Generator):
    """x'_s ~ q(x_s | x_t, x0' = G(x_t, z, t)), z ~ N(0, I): the generator's reverse step (Xiao et al. 2022, eq. 8)."""
    z = randn((x_t.shape[0], gen.latent_dim), generator, device=x_t.device, dtype=x_t.dtype)
    noise = randn(x_t.shape, generator, device=x_t.device, dtype=x_t.dtype)
    return ddpm_step(gen, x_t, t, s, noise, variance="beta_tilde", cond=with_latent(cond, z))[0]


@configurable
class DDGANLoss:
    """The non-saturating GAN loss on pairs (x_{t-1}, x_t), t ~ U{0..T-1} (Xiao et al. 2022, eq. 9-10), in phases:
    'discriminator' softplus(-D(real)) + softplus(D(fake)), with R1 gamma/2 |grad_{x_{t-1}} D(real)|^2 (Mescheder et al.
    2018) in the same phase, or every `r1_every` steps as its own phase scaled by r1_every (StyleGAN2's lazy
    regularisation); then 'generator' softplus(-D(fake)) on fresh pairs.

    `lr_d` scales train.lr for the discriminator. Training stops with a one-line reason when the discriminator's loss
    stays below `collapse_loss` for `collapse_steps` steps in a row (it wins outright; the generator learns nothing).
    """

    term_names = ("d_real", "d_fake", "r1", "g_adv")

    def __init__(self, r1_gamma: float = 0.05, r1_every: int = 1, lr_d: float = 1.0, collapse_loss: float = 1e-3,
                 collapse_steps: int = 500):
        require(r1_gamma >= 0, "r1_gamma", "a number >= 0 (the R1 penalty's weight)", r1_gamma)
        for name, value in (("r1_every", r1_every), ("collapse_steps", collapse_steps)):
            require(isinstance(value, int) and not isinstance(value, bool) and value >= 1, name, "a positive integer",
                    value)
        require(lr_d > 0, "lr_d", "a positive number (the discriminator's learning rate / train.lr)", lr_d)
        require(collapse_loss >= 0, "collapse_loss", "a number >= 0", collapse_loss)
        self.r1_gamma, self.r1_every, self.lr_d = r1_gamma, r1_every, lr_d
        self.collapse_loss, self.collapse_steps = collapse_loss, collapse_steps
        self._collapsed = 0  # steps in a row with the discriminator's loss below collapse_loss
        lazy = r1_every > 1 and r1_gamma > 0
        self.phases = (Phase("discriminator", "discriminator"),
                       *((Phase("r1", "discriminator", every=r1_every),) if lazy else ()),
                       Phase("generator", "generator"))

    def parts(self, model: DDGAN) -> dict:
        """The players and their learning-rate scales: each gets its own optimizer."""
        if not isinstance(model, DDGAN):
            raise ValueError(f"objective ddgan: trains a DDGAN (generator and discriminator), not a "
                             f"{type(model).__name__}")
        return {"generator": (model.generator, 1.0), "discriminator": (model.discriminator, self.lr_d)}

    def _times(self, process, n: int, generator: Generator, device):
        T = int(round(process.t_max)) + 1
        t = (rand((n,), generator, dtype=torch.float64) * T).floor().clamp(max=T - 1).to(device)
        return t, t - 1

    def terms(self, model: DDGAN, x0: torch.Tensor, cond=None, generator: Generator = None,
              phase: str = "discriminator") -> dict:
        process = model.process
        t, s = self._times(process, x0.shape[0], generator, x0.device)
        x_s, x_t = real_pair(process, x0, t, s, generator)
        if phase == "generator":
            fake = fake_step(model.generator, x_t, t, s, cond, generator)
            g_adv = F.softplus(-model.discriminate(fake, x_t, t, cond))
            return {"loss": g_adv, "g_adv": g_adv}
        penalise = self.r1_gamma > 0 and (phase == "r1" or self.r1_every == 1)
        if penalise:
            x_s = x_s.detach().requires_grad_(True)
        real = model.discriminate(x_s, x_t, t, cond)
        out, loss = {}, torch.zeros_like(real)
        if phase == "discriminator":
            with torch.no_grad():
                fake = fake_step(model.generator, x_t, t, s, cond, generator)
            out["d_real"], out["d_fake"] = F.softplus(-real), F.softplus(model.discriminate(fake, x_t, t, cond))
            loss = out["d_real"] + out["d_fake"]
        if penalise:
            grad = torch.autograd.grad(real.sum(), x_s, create_graph=True)[0]
            out["r1"] = grad.float().pow(2).reshape(len(grad), -1).sum(1)
            loss = loss + 0.5 * self.r1_gamma * (self.r1_every if phase == "r1" else 1) * out["r1"]
        return {"loss": loss, **out}

    def diverged(self, terms: dict) -> Optional[str]:
        """A reason to stop when the discriminator has won outright for collapse_steps steps in a row, else None."""
        if "d_real" not in terms or "d_fake" not in terms:
            return None
        d = float(terms["d_real"] + terms["d_fake"])
        self._collapsed = self._collapsed + 1 if d < self.collapse_loss else 0
        if self._collapsed >= self.collapse_steps:
            return (f"the discriminator's loss stayed below loss.collapse_loss={self.collapse_loss:g} for "
                    f"{self.collapse_steps} steps in a row (it wins outright, so the generator gets no signal); lower "
                    f"loss.lr_d, raise loss.r1_gamma, or lower train.lr")
        return None

    def state_dict(self) -> dict:
        return {"collapsed": self._collapsed}

    def load_state_dict(self, state: dict) -> None:
        self._collapsed = int(state.get("collapsed", 0))
