"""One converter between the network's output (eps, x0, v, score, EDM's F or the flow velocity) and (x0, eps).

Everything is for x_t = alpha x_0 + sigma eps with general alpha, sigma (VP, VE and EDM alike).
"""
from __future__ import annotations

from typing import Literal, get_args

import torch

from .utils import append_dims

PredictionType = Literal["eps", "x0", "v", "score", "edm", "flow"]
PREDICTION_TYPES = get_args(PredictionType)


def check_prediction(kind: str) -> str:
    """Validate a prediction type name, with a one-line error."""
    if kind not in PREDICTION_TYPES:
        raise ValueError(f"prediction: expected one of {PREDICTION_TYPES}, got {kind!r}")
    return kind


def bcast(c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """c (per example, or already broadcast-ready) shaped and typed to broadcast against x."""
    if c.ndim == x.ndim and c.dtype == x.dtype:  # already broadcastable (samplers precompute it so)
        return c
    return append_dims(c, x.ndim).to(x.dtype)


def edm_coefficients(level: torch.Tensor, sigma_data: float = 0.5):
    """Karras et al. 2022, Table 1: c_skip, c_out, c_in, c_noise for noise level sigma = `level`."""
    s2, d2 = level**2, sigma_data**2
    c_skip = d2 / (s2 + d2)
    c_out = level * sigma_data / (s2 + d2).sqrt()
    c_in = 1 / (s2 + d2).sqrt()
    c_noise = level.log() / 4
    return c_skip, c_out, c_in, c_noise


def consistency_x0(x0, x_tilde, level, sigma_min: float, sigma_data: float = 0.5):
    """The consistency function f(x~, s) = c_skip x~ + c_out F (Song et al. 2023, eq. 9 and app. C) over any network:
    F is the EDM output F = (x0 - c_skip_edm x~) / c_out_edm of the base prediction x0, and with c_skip = sd^2 /
    ((s - s_min)^2 + sd^2), c_out = sd (s - s_min) / sqrt(s^2 + sd^2) this is c_skip x~ + (1 - s_min / s) (x0 -
    c_skip_edm x~): f(x~, s_min) = x~ exactly (the boundary condition), and f -> x0 far above s_min."""
    s = bcast(level, x_tilde)
    d2 = sigma_data**2
    c_skip = d2 / ((s - sigma_min) ** 2 + d2)
    ratio = torch.where(s > 0, (s - sigma_min) / s.clamp(min=torch.finfo(s.dtype).tiny), torch.zeros_like(s))
    return c_skip * x_tilde + ratio * (x0 - d2 / (s**2 + d2) * x_tilde)


def to_x0_eps(kind: str, out, x_t, alpha, sigma, sigma_data: float = 0.5):
    """(x0, eps) from a network output of type `kind` at x_t = alpha x0 + sigma eps."""
    a, s = bcast(alpha, x_t), bcast(sigma, x_t)
    if kind == "eps":
        return torch.addcmul(x_t, s, out, value=-1) / a, out
    if kind == "score":
        eps = -s * out  # score = -eps / sigma
        return (x_t - s * eps) / a, eps
    if kind == "x0":
        return out, (x_t - a * out) / s
    if kind == "v":  # v = alpha eps - sigma x0  (Salimans & Ho 2022)
        n = a**2 + s**2
        return (a * x_t - s * out) / n, (s * x_t + a * out) / n
    if kind == "edm":  # D(x) = c_skip x + c_out F in the coordinates x_t/alpha
        c_skip, c_out, _, _ = edm_coefficients(sigma / alpha, sigma_data)
        x_tilde = x_t / a
        x0 = bcast(c_skip, x_t) * x_tilde + bcast(c_out, x_t) * out
        return x0, (x_t - a * x0) / s
    if kind == "flow":  # u = eps - x0 (Lipman et al. 2023; Liu et al. 2023): x_t = (alpha + sigma) x0 + sigma u
        x0 = torch.addcmul(x_t, s, out, value=-1) / (a + s)
        return x0, out + x0
    raise ValueError(f"prediction: expected one of {PREDICTION_TYPES}, got {kind!r}")


def from_x0_eps(kind: str, x0, eps, x_t, alpha, sigma, sigma_data: float = 0.5):
    """The network output of type `kind` that corresponds to (x0, eps): the training target."""
    a, s = bcast(alpha, x_t), bcast(sigma, x_t)
    if kind == "eps":
        return eps
    if kind == "score":
        return -eps / s
    if kind == "x0":
        return x0
    if kind == "v":
        return a * eps - s * x0
    if kind == "edm":
        c_skip, c_out, _, _ = edm_coefficients(sigma / alpha, sigma_data)
        return (x0 - bcast(c_skip, x_t) * (x_t / a)) / bcast(c_out, x_t)
    if kind == "flow":
        return eps - x0
    raise ValueError(f"prediction: expected one of {PREDICTION_TYPES}, got {kind!r}")


def network_inputs(kind: str, x_t, t, alpha, sigma, sigma_data: float = 0.5):
    """What the network sees: (scaled input, noise conditioning); EDM scales by c_in and conditions on ln(sigma)/4."""
    if kind == "edm":
        _, _, c_in, c_noise = edm_coefficients(sigma / alpha, sigma_data)
        return x_t * bcast(c_in / alpha, x_t), c_noise.to(x_t.dtype).reshape(-1).expand(x_t.shape[0])
    return x_t, t.to(x_t.dtype)


def x0_error_scale(kind: str, alpha, sigma, sigma_data: float = 0.5):
    """c^2 in |target error|^2 = c^2 |x0 error|^2 at fixed x_t: converts x0-space loss weights to `kind`'s units."""
    a2, s2 = alpha**2, sigma**2
    if kind == "eps":
        return a2 / s2
    if kind == "score":
        return a2 / s2**2
    if kind == "x0":
        return torch.ones_like(alpha)
    if kind == "v":
        return (a2 + s2) ** 2 / s2
    if kind == "edm":
        _, c_out, _, _ = edm_coefficients(sigma / alpha, sigma_data)
        return 1 / c_out**2
    if kind == "flow":  # u = x_t / sigma - (alpha + sigma) / sigma x0 at fixed x_t
        return (alpha + sigma) ** 2 / s2
    raise ValueError(f"prediction: expected one of {PREDICTION_TYPES}, got {kind!r}")
