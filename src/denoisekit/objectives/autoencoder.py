"""The first stage of latent diffusion: a KL-regularised autoencoder's loss (Rombach et al. 2022, app. G; the VAE
bound of Kingma & Welling 2014 with a learned scalar likelihood scale)."""
from __future__ import annotations

import math
from typing import Literal

import torch

from ..config import configurable, require
from ..utils import Generator, randn

Reconstruction = Literal["l1", "l2"]


def diagonal_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, diag(exp(logvar))) || N(0, I)) = 1/2 sum(mean^2 + exp(logvar) - 1 - logvar), per element."""
    return 0.5 * (mean**2 + logvar.exp() - 1.0 - logvar)


def reconstruction_nll(x: torch.Tensor, x_hat: torch.Tensor, log_b: torch.Tensor, kind: str) -> torch.Tensor:
    """-log p(x | z) per element with a learned scalar scale b = exp(log_b): Laplace |x - x^| / b + log 2b (l1), or
    Gaussian (x - x^)^2 / 2b^2 + log b + log(2 pi) / 2 (l2)."""
    r = x - x_hat
    if kind == "l1":
        return r.abs() * torch.exp(-log_b) + log_b + math.log(2.0)
    return 0.5 * r.square() * torch.exp(-2 * log_b) + log_b + 0.5 * math.log(2 * math.pi)


@configurable
class AutoencoderLoss:
    """-ELBO per data element: E_q[-log p(x | z)] + kl_weight KL(q(z | x) || N(0, I)), one posterior draw of z from the
    example's generator (kl_weight 1 is the VAE bound; latent diffusion keeps it near 1e-6 so the latent stays close
    to a deterministic code, Rombach et al. 2022, sec. 3)."""

    term_names = ("rec", "kl", "l1")

    def __init__(self, reconstruction: Reconstruction = "l1", kl_weight: float = 1e-6):
        require(reconstruction in ("l1", "l2"), "reconstruction", "'l1' or 'l2'", reconstruction)
        require(kl_weight >= 0, "kl_weight", "a number >= 0", kl_weight)
        self.reconstruction, self.kl_weight = reconstruction, kl_weight

    def __call__(self, model, x0: torch.Tensor, cond=None, generator: Generator = None) -> torch.Tensor:
        return self.terms(model, x0, cond, generator)["loss"]

    def terms(self, model, x0: torch.Tensor, cond=None, generator: Generator = None) -> dict:
        """{'loss', 'rec': the reconstruction's NLL, 'kl': KL per data element, 'l1': mean |x - x^|}, per example."""
        mean, logvar = model.encode(x0)
        z = mean + (0.5 * logvar).exp() * randn(mean.shape, generator, device=x0.device, dtype=mean.dtype)
        x_hat = model.decode(z, x0.shape[-2:])
        d = x0[0].numel()
        rec = reconstruction_nll(x0, x_hat, model.log_b, self.reconstruction).reshape(len(x0), -1).sum(1) / d
        kl = diagonal_kl(mean, logvar).reshape(len(x0), -1).sum(1) / d
        l1 = (x0 - x_hat).abs().reshape(len(x0), -1).mean(1)
        return {"loss": rec + self.kl_weight * kl, "rec": rec.detach(), "kl": kl.detach(), "l1": l1.detach()}
