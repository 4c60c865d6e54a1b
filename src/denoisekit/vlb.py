"""The variational bound's one home (DESIGN.md #5): -log p(x_0) <= L_T + sum_{t>1} L_{t-1} + L_0 (Ho et al. 2020,
eq. 5), every term in bits per dimension, for the hybrid loss, the bits/dim report and the tests alike."""
from __future__ import annotations

import math
from typing import Literal, Optional, get_args

import torch

from .prediction import bcast
from .utils import Generator, append_dims, randn

LN2 = math.log(2.0)
BIN = 1 / 255  # half the width of an 8-bit bin of data scaled to [-1, 1]: x = k / 127.5 - 1

Variance = Literal["learned", "beta_tilde", "beta"]
VARIANCES = get_args(Variance)
Decoder = Literal["discretized", "gaussian"]


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) per element, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def gaussian_log_likelihood(x, mean, log_scale) -> torch.Tensor:
    """log N(x; mean, e^(2 log_scale)) per element, in nats: the decoder for continuous data."""
    return -0.5 * math.log(2 * math.pi) - log_scale - 0.5 * ((x - mean) * torch.exp(-log_scale)) ** 2


def _log_diff_cdf(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log(Phi(b) - Phi(a)) for a < b without cancellation (the upper tail is reflected to the lower one)."""
    flip = a > 0
    lo, hi = torch.where(flip, -b, a), torch.where(flip, -a, b)
    log_hi, log_lo = torch.special.log_ndtr(hi), torch.special.log_ndtr(lo)
    return log_hi + torch.log1p(-torch.exp(log_lo - log_hi).clamp(max=1 - 1e-12))


def discretized_gaussian_log_likelihood(x, mean, log_scale) -> torch.Tensor:
    """log P(x) per element for 8-bit data in [-1, 1] under N(mean, e^(2 log_scale)) integrated over x's bin
    [x - 1/255, x + 1/255], the edge bins open to -inf and +inf (Ho et al. 2020, eq. 13), in nats."""
    inv = torch.exp(-log_scale)
    hi, lo = (x - mean + BIN) * inv, (x - mean - BIN) * inv
    return torch.where(x < -1 + BIN, torch.special.log_ndtr(hi),
                       torch.where(x > 1 - BIN, torch.special.log_ndtr(-lo), _log_diff_cdf(lo, hi)))


def check_decoder(decoder: Decoder, x0: torch.Tensor) -> None:
    """A one-line error for a decoder that does not fit the data (the 8-bit decoder needs data in [-1, 1])."""
    if decoder not in ("discretized", "gaussian"):
        raise ValueError(f"decoder: expected 'discretized' (8-bit data in [-1, 1]) or 'gaussian' (continuous data), "
                         f"got {decoder!r}")
    if decoder == "discretized":
        lo, hi = float(x0.min()), float(x0.max())
        if lo < -1 - 1e-6 or hi > 1 + 1e-6:
            raise ValueError(f"decoder: the 8-bit discretized Gaussian decoder needs data in [-1, 1], found values in "
                             f"[{lo:.3g}, {hi:.3g}]; use decoder 'gaussian' for continuous data")


def default_decoder(x0: torch.Tensor) -> Decoder:
    """Images are 8-bit (the discretized decoder); vectors are continuous (a Gaussian density)."""
    return "discretized" if x0.ndim == 4 else "gaussian"


def resolve_variance(denoiser, variance: Optional[Variance]) -> Variance:
    """The reverse-step variance: the model's learned one if it has it (the default), else beta-tilde."""
    learned = bool(getattr(denoiser, "learned_variance", False))
    if variance is None:
        return "learned" if learned else "beta_tilde"
    if variance not in ("learned", "beta_tilde", "beta"):
        raise ValueError(f"variance: expected 'learned', 'beta_tilde' or 'beta', got {variance!r}")
    if variance == "learned" and not learned:
        raise ValueError("variance: 'learned' needs a model trained with learned variance (learned_variance: true, "
                         "objective hybrid or vlb); this one has a fixed variance: use 'beta_tilde' or 'beta'")
    return variance


def log_variance_ends(process, t, s):
    """(log beta, log beta-tilde, at_data) of the reverse step from t to s (float64): beta = sigma^2_{t|s} and
    beta-tilde = the posterior variance, taken between the two times visited; at the data step beta-tilde is 0 and is
    replaced by that of the step above (improved-diffusion's clipped log variance)."""
    t, s = torch.as_tensor(t, dtype=torch.float64), torch.as_tensor(s, dtype=torch.float64)
    at_data = process.sigma(s) == 0
    post = process.posterior_coefficients(t, s)[2]
    above = process.posterior_coefficients(2 * t - s, t)[2]  # beta-tilde of the step from t + (t - s) to t
    return process.transition_variance(t, s).log(), torch.where(at_data, above, post).log(), at_data


def model_log_variance(process, t, s, variance: Variance, v: Optional[torch.Tensor] = None) -> torch.Tensor:
    """log Sigma of the reverse step p(x_s | x_t) (float64, per time, or broadcast against v).

    Between the ends of `log_variance_ends`, so the variance stays right under respacing. 'learned':
    v log beta + (1 - v) log beta-tilde (Nichol & Dhariwal 2021, eq. 15). At the data step fixed 'beta' takes
    beta-tilde's clipped value too (the decoder's scale); the learned one keeps beta.
    """
    log_beta, log_tilde, at_data = log_variance_ends(process, t, s)
    if variance == "beta_tilde":
        return log_tilde
    if variance == "beta":
        return torch.where(at_data, log_tilde, log_beta)
    if v is None:
        raise ValueError("variance: 'learned' needs the model's v (a denoiser with learned_variance: true)")
    return interpolate_log_variance(v, bcast(log_beta, v), bcast(log_tilde, v))


def interpolate_log_variance(v, log_beta, log_tilde):
    """v log beta + (1 - v) log beta-tilde (Nichol & Dhariwal 2021, eq. 15)."""
    return log_tilde + v * (log_beta - log_tilde)


def _mean_over_dims(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).mean(1)


def prior_kl(process, x0: torch.Tensor) -> torch.Tensor:
    """L_T = KL(q(x_T | x_0) || p(x_T)) per example, bits/dim; p(x_T) = N(0, prior_std^2 I)."""
    t = torch.full((x0.shape[0],), process.t_max, dtype=torch.float64, device=x0.device)
    mean = bcast(process.alpha(t), x0) * x0
    logvar = bcast(2 * process.sigma(t).log(), x0)
    kl = normal_kl(mean, logvar, torch.zeros_like(mean), torch.full_like(mean, 2 * math.log(process.prior_std)))
    return _mean_over_dims(kl) / LN2


def vlb_term(denoiser, x0: torch.Tensor, t, s=None, *, x_t: Optional[torch.Tensor] = None, pred=None, cond=None,
             variance: Optional[Variance] = None, decoder: Optional[Decoder] = None,
             generator: Generator = None) -> torch.Tensor:
    """L at (t, s) per example in bits/dim: KL(q(x_s | x_t, x_0) || p(x_s | x_t)) (Ho et al. 2020, eq. 5), or, where s
    is the data, the decoder's -log p(x_0 | x_t) (eq. 13 for 8-bit data).

    s defaults to the previous trained time t - grid_step; x_t is drawn from q(x_t | x_0) unless given; `pred` (the
    denoiser's Prediction at x_t, possibly with a detached mean) is computed unless given.
    """
    process = denoiser.process
    b = x0.shape[0]
    t = torch.as_tensor(t, dtype=torch.float64, device=x0.device).expand(b)
    s = t - process.grid_step if s is None else torch.as_tensor(s, dtype=torch.float64, device=x0.device).expand(b)
    decoder = decoder or default_decoder(x0)
    variance = resolve_variance(denoiser, variance)
    if x_t is None:
        x_t = process.q_sample(x0, t, randn(x0.shape, generator, device=x0.device, dtype=x0.dtype))
    if pred is None:
        pred = denoiser(x_t, t, cond)
    c_xt, c_x0, post_var = (bcast(c, x0) for c in process.posterior_coefficients(t, s))
    model_mean = c_xt * x_t + c_x0 * pred.x0
    log_var = model_log_variance(process, t, s, variance, pred.v)
    log_var = log_var if log_var.ndim == x0.ndim else bcast(log_var, x0)
    at_data = process.sigma(s) == 0
    true_mean = c_xt * x_t + c_x0 * x0
    kl = normal_kl(true_mean, torch.where(post_var > 0, post_var, torch.ones_like(post_var)).log(), model_mean, log_var)
    if decoder == "discretized":
        nll = -discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * log_var)
    else:
        nll = -gaussian_log_likelihood(x0, model_mean, 0.5 * log_var)
    return torch.where(append_dims(at_data, x0.ndim), nll, kl).reshape(b, -1).mean(1) / LN2
