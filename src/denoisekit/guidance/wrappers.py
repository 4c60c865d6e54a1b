"""Guidance as denoiser wrappers (DESIGN.md): each takes a denoiser, returns one, forwards `.process`, and so works
with every sampler. Guidance is Bayes' rule on scores: grad log p(x_t | y) = grad log p(x_t) + grad log p(y | x_t),
and with eps = -sigma grad log p(x_t), a score correction g becomes eps-hat = eps - sigma g."""
from __future__ import annotations

import math
from typing import Any, Callable, Literal, Optional, get_args

import torch
from torch import nn

from ..conditioning import Cond, guidable, labels_of
from ..config import require
from ..denoiser import Denoiser, Prediction, time_coefficients
from ..prediction import bcast, to_x0_eps
from ..utils import append_dims

ClassifierForm = Literal["score", "mean"]
CLASSIFIER_FORMS = get_args(ClassifierForm)


class DenoiserWrapper(nn.Module):
    """A denoiser around a denoiser: forwards `.process` and any sampler hook (`mean_shift`) of the one inside."""

    def __init__(self, denoiser):
        super().__init__()
        self.denoiser = denoiser

    @property
    def process(self):
        return self.denoiser.process

    @property
    def mean_shift(self) -> Optional[Callable]:
        return getattr(self.denoiser, "mean_shift", None)

    @property
    def sigma_min(self) -> float:
        """The boundary level of a consistency model inside (0 for any other denoiser)."""
        return float(getattr(self.denoiser, "sigma_min", 0.0))

    @property
    def learned_variance(self) -> bool:
        return bool(getattr(self.denoiser, "learned_variance", False))

    @property
    def latent_dim(self):
        """The latent z's size of a DDGAN generator inside (None for a denoiser)."""
        return getattr(self.denoiser, "latent_dim", None)

    def coefficients(self, x: torch.Tensor, t, alpha=None, sigma=None):
        """(t as a batch vector, alpha, sigma) broadcastable against x, computed unless the sampler passed them."""
        t, alpha, sigma = time_coefficients(self.process, x, t, alpha, sigma)
        return t, bcast(alpha, x), bcast(sigma, x)


def from_x0(x0: torch.Tensor, x_t: torch.Tensor, alpha, sigma, v=None) -> Prediction:
    """The Prediction whose x0 is given (eps follows from x_t = alpha x0 + sigma eps); a learned variance's v is kept."""
    return Prediction(*to_x0_eps("x0", x0, x_t, alpha, sigma), v=v)


def _repeat_coefficient(v: torch.Tensor, batch: int) -> torch.Tensor:
    """A time coefficient for a batch sent twice: per-example values repeated, shared ones (broadcast) kept."""
    return torch.cat([v, v]) if v.ndim >= 1 and v.shape[0] == batch else v


class ClassifierFreeGuidance(DenoiserWrapper):
    """eps-hat = (1 + w) eps(x, y) - w eps(x) (Ho & Salimans 2022, eq. 6), i.e. gamma eps(x, y) + (1 - gamma) eps(x)
    with gamma = 1 + w; both branches in one batched forward pass, combined before the inner denoiser's x0 clipping.

    `rescale` phi in [0, 1] matches the guided x0's per-sample std to the conditional one's (Lin et al. 2023, eq. 15-16);
    `interval` (lo, hi) applies w only at noise levels sigma/alpha in (lo, hi] (Kynkaanniemi et al. 2024), the
    conditional prediction elsewhere.
    """

    def __init__(self, denoiser, w: Optional[float] = None, *, gamma: Optional[float] = None, rescale: float = 0.0,
                 interval: Optional[tuple] = None):
        super().__init__(denoiser)
        if (w is None) == (gamma is None):
            raise ValueError("guidance: give the scale as w (eps-hat = (1 + w) eps_c - w eps_u) or as gamma = 1 + w")
        w = float(gamma) - 1 if gamma is not None else float(w)
        require(math.isfinite(w) and w >= -1, "guidance", "a scale w >= -1 (gamma = 1 + w >= 0)", w)
        require(0 <= rescale <= 1, "guidance_rescale", "a number in [0, 1]", rescale)
        if interval is not None:
            lo, hi = (float(v) for v in interval)
            require(0 <= lo < hi, "guidance_interval", "noise levels lo < hi with lo >= 0", interval)
            interval = (lo, hi)
        self.w, self.rescale, self.interval = w, float(rescale), interval

    def forward(self, x: torch.Tensor, t, cond: Any = None, *, alpha=None, sigma=None) -> Prediction:
        cond = guidable(cond, "classifier-free guidance")
        t, alpha, sigma = self.coefficients(x, t, alpha, sigma)
        both = Cond.cat([cond, cond.null()])  # conditional, then unconditional (a concatenated image goes to both)
        inner = self.denoiser
        clip = getattr(inner, "clip_x0", None) if isinstance(inner, Denoiser) else None
        kwargs = {"clip": False} if isinstance(inner, Denoiser) else {}
        pred = inner(torch.cat([x, x]), torch.cat([t, t]), both, alpha=_repeat_coefficient(alpha, len(x)),
                     sigma=_repeat_coefficient(sigma, len(x)), **kwargs)  # one batched pass
        x0_c, x0_u = pred.x0.chunk(2)
        w = torch.full((x.shape[0],), self.w, dtype=x.dtype, device=x.device)
        if self.interval is not None:
            level = (sigma / alpha).reshape(-1).expand(x.shape[0])
            w = torch.where((level > self.interval[0]) & (level <= self.interval[1]), w, torch.zeros_like(w))
        x0 = x0_c + append_dims(w, x.ndim) * (x0_c - x0_u)
        if self.rescale > 0:
            dims = tuple(range(1, x.ndim))
            ratio = x0_c.std(dim=dims, keepdim=True) / x0.std(dim=dims, keepdim=True).clamp(min=1e-12)
            x0 = self.rescale * x0 * ratio + (1 - self.rescale) * x0
        if clip is not None:
            x0 = x0.clamp(-clip, clip)
        return from_x0(x0, x, alpha, sigma, None if pred.v is None else pred.v.chunk(2)[0])  # the conditional v


class DynamicThresholding(DenoiserWrapper):
    """Imagen's dynamic thresholding (Saharia et al. 2022, sec. 2.3): s = the `percentile` of |x0| per sample,
    s = max(s, 1), x0 <- clip(x0, -s, s) / s."""

    def __init__(self, denoiser, percentile: float = 0.995):
        super().__init__(denoiser)
        require(0 < percentile <= 1, "threshold", "a percentile in (0, 1]", percentile)
        self.percentile = float(percentile)

    def forward(self, x: torch.Tensor, t, cond: Any = None, *, alpha=None, sigma=None) -> Prediction:
        t, alpha, sigma = self.coefficients(x, t, alpha, sigma)
        pred = self.denoiser(x, t, cond, alpha=alpha, sigma=sigma)
        s = torch.quantile(pred.x0.reshape(len(x), -1).abs().float(), self.percentile, dim=1).clamp(min=1)
        s = append_dims(s.to(x.dtype), x.ndim)
        return from_x0(torch.maximum(torch.minimum(pred.x0, s), -s) / s, x, alpha, sigma, pred.v)


class ClassifierGuidance(DenoiserWrapper):
    """Guidance by any differentiable log p(y | x_t, t) (a noisy classifier, an analytic posterior, a reward).

    form 'score' (DDIM, ODE solvers, any sampler): eps-hat = eps - s sigma_t grad log p(y | x_t) (Dhariwal & Nichol
    2021, Alg. 2; sigma_t = sqrt(1 - alpha-bar_t) for DDPM). form 'mean' (ancestral DDPM only): the posterior mean
    moves by s Sigma grad log p(y | x_t) (Alg. 1), applied by the ddpm sampler through the `mean_shift` hook.
    `log_prob(x_t, t, y) -> (B,)`; y is the sampler's cond slot `reads` (the class labels; a noised CLIP reads the
    caption's tokens: GLIDE's CLIP guidance, Nichol et al. 2022, eq. 4).
    """

    def __init__(self, denoiser, log_prob: Callable, scale: float = 1.0, form: str = "score", reads: str = "label"):
        super().__init__(denoiser)
        require(form in CLASSIFIER_FORMS, "classifier_form", "'score' or 'mean'", form)
        require(math.isfinite(scale), "classifier_scale", "a finite number", scale)
        self.log_prob, self.scale, self.form, self.reads = log_prob, float(scale), form, reads

    def target(self, cond: Any) -> torch.Tensor:
        """What log_prob is asked about: the labels, or the slot `reads` of the sampler's cond."""
        if self.reads == "label":
            return labels_of(cond, "classifier guidance")
        c = Cond.of(cond)
        value = getattr(c, self.reads, None) if c is not None else None
        if value is None:
            raise ValueError(f"guidance: needs cond.{self.reads} (pass the caption's tokens for CLIP guidance)")
        return value

    def grad(self, x: torch.Tensor, t, labels: torch.Tensor) -> torch.Tensor:
        """grad_x log p(y | x_t, t), by autograd (also inside a sampler's no_grad)."""
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            lp = self.log_prob(xg, t, labels)
            return torch.autograd.grad(lp.sum(), xg)[0].to(x.dtype)

    @property
    def mean_shift(self) -> Optional[Callable]:
        if self.form != "mean":
            return super().mean_shift

        def shift(x, t, cond, variance):
            return self.scale * variance * self.grad(x, t, self.target(cond))
        return shift

    def forward(self, x: torch.Tensor, t, cond: Any = None, *, alpha=None, sigma=None) -> Prediction:
        t, alpha, sigma = self.coefficients(x, t, alpha, sigma)
        pred = self.denoiser(x, t, cond, alpha=alpha, sigma=sigma)
        if self.form == "mean" or self.scale == 0:
            return pred
        g = self.grad(x, t, self.target(cond))
        return Prediction(*to_x0_eps("eps", pred.eps - self.scale * sigma * g, x, alpha, sigma), v=pred.v)
