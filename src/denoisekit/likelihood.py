"""Likelihoods of data under a trained model: the variational bound summed over every step (or stratified), and the
exact log-density of the probability-flow ODE by the instantaneous change of variables (Song et al. 2021, sec. 4.3;
Chen et al. 2018), with Hutchinson's trace estimator (Grathwohl et al. 2019)."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal, Optional, get_args

import torch
from tqdm.auto import tqdm

from .conditioning import Cond
from .divergence import divergence, probe as make_probe, repeat_batch
from .samplers.base import Grid
from .utils import Generator, rand
from .vlb import LN2, Decoder, Variance, check_decoder, default_decoder, prior_kl, resolve_variance, vlb_term

Probe = Literal["rademacher", "gaussian", "exact"]
PROBES = get_args(Probe)
Method = Literal["bound", "ode", "both"]
METHODS = get_args(Method)
EXACT_TRACE_MAX_DIM = 256  # the exact divergence repeats the batch d times
DEQUANT_BITS = math.log2(127.5)  # log2 of 1 / (bin width 2/255): uniform dequantization of 8-bit data in [-1, 1]


@dataclass
class Bound:
    """The variational bound per example in bits/dim: total = prior + sum of the step terms (decoder included)."""
    total: torch.Tensor
    prior: torch.Tensor
    decoder: torch.Tensor                 # L_0
    terms: Optional[torch.Tensor]         # (T,) batch means of L_{t-1} by step (None when stratified)


@torch.no_grad()
def variational_bound(denoiser, x0: torch.Tensor, *, cond=None, terms: Optional[int] = None,
                      variance: Optional[Variance] = None, decoder: Optional[Decoder] = None,
                      generator: Generator = None, progress: bool = False) -> Bound:
    """L_vlb = L_T + sum_t L_{t-1} + L_0 per example (Ho et al. 2020, eq. 5), one fresh x_t ~ q(x_t | x_0) per term.

    `terms=None` sums all T terms; `terms=K` is stratified: L_0 exactly, and the other steps cut into K equal runs, one
    step drawn per run and example, weighted by the run's length (unbiased, K + 1 network evaluations instead of T).
    """
    process = denoiser.process
    decoder = decoder or default_decoder(x0)
    check_decoder(decoder, x0)
    variance = resolve_variance(denoiser, variance)
    times = process.trained_times().to(x0.device)
    b, n = x0.shape[0], len(times)
    total = prior_kl(process, x0)
    prior = total.clone()
    if terms is None:
        by_step = torch.zeros(n, dtype=torch.float64)
        for i in tqdm(range(n), desc="bound terms", leave=False, disable=not progress):
            term = vlb_term(denoiser, x0, times[i], cond=cond, variance=variance, decoder=decoder, generator=generator)
            total = total + term
            by_step[i] = term.double().mean()
            if i == 0:
                decoder_term = term
        return Bound(total, prior, decoder_term, by_step)
    if isinstance(terms, bool) or not isinstance(terms, int) or not 1 <= terms <= n - 1:
        raise ValueError(f"terms: expected a number of strata in 1..{n - 1} (or all terms), got {terms!r}")
    decoder_term = vlb_term(denoiser, x0, times[0], cond=cond, variance=variance, decoder=decoder, generator=generator)
    total = total + decoder_term  # L_0 differs in kind from the KL terms: always exact, never inside a stratum
    for run in tqdm(torch.tensor_split(torch.arange(1, n), terms), desc="bound strata", leave=False,
                    disable=not progress):
        pick = run[0] + (rand((b,), generator, dtype=torch.float64) * len(run)).floor().long().clamp(max=len(run) - 1)
        term = vlb_term(denoiser, x0, times[pick.to(x0.device)], cond=cond, variance=variance, decoder=decoder,
                        generator=generator)
        total = total + len(run) * term
    return Bound(total, prior, decoder_term, None)


def ode_log_likelihood(denoiser, x: torch.Tensor, *, cond=None, probe: Probe = "rademacher",
                       t_eps: Optional[float] = None, rtol: float = 1e-5, atol: float = 1e-5,
                       generator: Generator = None, stats: Optional[dict] = None) -> torch.Tensor:
    """log p(x) in nats per example under the probability-flow ODE of `denoiser`, at the time t_eps (by default the
    smallest trained time) where the ODE starts.

    In x~ = x/alpha and u = log(sigma/alpha) the ODE reads dx~/du = f = x~ - D(x~, e^u), so
    log p(x~_0) = log p(x~_1) + int div f du with div f = d - tr(dD/dx~) (the instantaneous change of variables),
    solved by adaptive dopri5 (torchdiffeq) together with x~ up to t_max, where p is the prior N(0, prior_std^2 I).
    The trace is exact (d passes of the batch, for small d) or Hutchinson's z^T (dD/dx~) z with one Rademacher or
    Gaussian probe z per example held fixed along the path. `stats['nfe']` receives the function evaluations.
    """
    try:
        from torchdiffeq import odeint
    except ImportError as e:  # a dependency of denoisekit; only a stripped environment lacks it
        raise ValueError("nll: the ODE likelihood needs the torchdiffeq package (pip install torchdiffeq)") from e
    if probe not in PROBES:
        raise ValueError(f"probe: expected 'rademacher', 'gaussian' or 'exact', got {probe!r}")
    for name, v in (("rtol", rtol), ("atol", atol)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ValueError(f"{name}: expected a positive number, got {v!r}")
    process = denoiser.process
    t0 = torch.tensor(process.t_eps if t_eps is None else t_eps, dtype=torch.float64)
    t1 = torch.tensor(process.t_max, dtype=torch.float64)
    if not process.sigma(t0) > 0 or not t0 < t1:
        raise ValueError(f"t_eps: expected a time in (data, t_max) with positive noise, got {float(t0)}")
    b, d = x.shape[0], x[0].numel()
    if probe == "exact" and d > EXACT_TRACE_MAX_DIM:
        raise ValueError(f"probe: 'exact' evaluates the network on d = {d} copies of each example; use it for d <= "
                         f"{EXACT_TRACE_MAX_DIM}, and 'rademacher' or 'gaussian' (Hutchinson) above")
    a0, a1 = float(process.alpha(t0)), float(process.alpha(t1))
    z = None if probe == "exact" else make_probe(x.shape, probe, generator, x.device, x.dtype)
    nfe = [0]

    ends = torch.stack([t1, t0])
    grids = {b: Grid(denoiser, ends, x, cond)}  # by batch size: the exact trace sends the batch d times
    if z is None:
        grids[b * d] = Grid(denoiser, ends, repeat_batch(x, d), None if cond is None else Cond.of(cond).repeat(d))

    def denoised(xt: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """D(x~, e^u), as the ODE samplers evaluate it off their grid."""
        return grids[xt.shape[0]].denoise_at_level(xt, float(u.double().exp())).x0

    def f(u, state):
        xt = state[0]
        nfe[0] += 1
        D, trace = divergence(lambda xg: denoised(xg, u), xt, z)
        return xt - D.detach(), d - trace.detach()

    u = torch.stack([process.noise_level(t0).log(), process.noise_level(t1).log()]).to(x.dtype).to(x.device)
    state = (x / a0, torch.zeros(b, dtype=x.dtype, device=x.device))
    with torch.no_grad():
        xs, deltas = odeint(f, state, u, rtol=rtol, atol=atol, method="dopri5")
    x1, delta = xs[-1] * a1, deltas[-1]
    log_prior = process.prior_log_prob(x1)
    if stats is not None:
        stats["nfe"] = stats.get("nfe", 0) + nfe[0]
    return log_prior + d * math.log(a1) + delta - d * math.log(a0)


def dequantize(x: torch.Tensor, generator: Generator = None) -> torch.Tensor:
    """8-bit data in [-1, 1] (x = k / 127.5 - 1) spread uniformly over its bin [x - 1/255, x + 1/255]."""
    return x + (rand(x.shape, generator, device=x.device, dtype=x.dtype) - 0.5) * (2 / 255)


def ode_bits_per_dim(denoiser, x: torch.Tensor, *, eight_bit: bool, generator: Generator = None, **kwargs):
    """-log p / (d ln 2) per example; for 8-bit data, of uniformly dequantized x plus log2(127.5), an upper bound on
    the discrete data's bits/dim (Theis et al. 2016; Song et al. 2021, app. D.2)."""
    d = x[0].numel()
    if eight_bit:
        check_decoder("discretized", x)
        x = dequantize(x, generator)
    nll = -ode_log_likelihood(denoiser, x, generator=generator, **kwargs) / (d * LN2)
    return nll + DEQUANT_BITS if eight_bit else nll


def mean_interval(values: torch.Tensor, z: float = 1.96) -> tuple[float, float]:
    """(mean, half-width of the 95% normal confidence interval) of per-example estimates."""
    v = values.double().reshape(-1)
    half = z * float(v.std(unbiased=True)) / math.sqrt(len(v)) if len(v) > 1 else math.inf
    return float(v.mean()), half


def data_nll(denoiser, x: torch.Tensor, labels: Optional[torch.Tensor] = None, *, method: Method = "both",
             terms: Optional[int] = None, variance: Optional[Variance] = None, probe: Probe = "rademacher",
             rtol: float = 1e-5, atol: float = 1e-5, batch_size: int = 64, seed: int = 0,
             progress: bool = True, continuous: bool = False) -> dict:
    """Bits/dim of the data x (images: 8-bit, bound with the discretized decoder, ODE on dequantized data; vectors,
    and images when `continuous` (a latent model's latents): continuous, with the Gaussian decoder) by the bound and/or the ODE, each as mean and 95% interval over examples (their noise, probes and
    dequantization drawn per example from (seed, index), so a result does not depend on the batch size)."""
    from .utils import sample_generators
    if method not in ("bound", "ode", "both"):
        raise ValueError(f"method: expected 'bound', 'ode' or 'both', got {method!r}")
    eight_bit = x.ndim == 4 and not continuous
    decoder: Decoder = "discretized" if eight_bit else "gaussian"
    check_decoder(decoder, x)
    variance = resolve_variance(denoiser, variance)
    device = next(iter(denoiser.parameters()), torch.empty(0)).device
    out: dict = {"n": len(x), "dims": x[0].numel(), "data": "8-bit" if eight_bit else "continuous"}
    parts = {"bound": [], "prior": [], "decoder": [], "ode": []}
    nfe, t0 = {}, time.perf_counter()
    bar = tqdm(total=len(x), desc=f"nll ({method})", disable=not progress)
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size].to(device)
        cond = None if labels is None else labels[start:start + batch_size].to(device)
        if method in ("bound", "both"):
            gens = sample_generators(seed, len(xb), offset=start)
            b = variational_bound(denoiser, xb, cond=cond, terms=terms, variance=variance, decoder=decoder,
                                  generator=gens, progress=progress)
            parts["bound"].append(b.total.cpu())
            parts["prior"].append(b.prior.cpu())
            parts["decoder"].append(b.decoder.cpu())
        if method in ("ode", "both"):
            gens = sample_generators(seed + 1, len(xb), offset=start)
            parts["ode"].append(ode_bits_per_dim(denoiser, xb, eight_bit=eight_bit, cond=cond, probe=probe, rtol=rtol,
                                                 atol=atol, generator=gens, stats=nfe).cpu())
        bar.update(len(xb))
    bar.close()
    for key, values in parts.items():
        if values:
            out[f"{key}_bpd"], out[f"{key}_ci95"] = mean_interval(torch.cat(values))
    if parts["ode"]:
        out["ode_nfe_per_batch"] = nfe["nfe"] / len(parts["ode"])
        out["probe"] = probe
    if parts["bound"]:
        out["terms"] = "all" if terms is None else f"{terms} strata"
        out["variance"] = variance
    out["seconds"] = time.perf_counter() - t0
    return out


def joint_nll(model, x: torch.Tensor, *, batch_size: int = 64, seed: int = 0, t_draws: int = 1,
              progress: bool = True) -> dict:
    """Bits/dim of the data x under LSGM's VAE and latent prior (Vahdat et al. 2021): the bound -ELBO with its terms
    (decoder, negative entropy, cross entropy), each as mean and 95% interval over examples; one z0 ~ q(z0 | x) and
    `t_draws` (t, eps) per example, drawn from (seed, index) so a result does not depend on the batch size."""
    from .objectives.lsgm import lsgm_bound
    from .utils import sample_generators
    device = next(model.parameters()).device
    parts: dict = {"bound": [], "rec": [], "neg_entropy": [], "cross_entropy": []}
    t0 = time.perf_counter()
    for start in tqdm(range(0, len(x), batch_size), desc="nll (joint bound)", disable=not progress):
        xb = x[start:start + batch_size].to(device)
        terms = lsgm_bound(model, xb, sample_generators(seed, len(xb), offset=start), t_draws=t_draws)
        for key in parts:
            parts[key].append(terms[key].cpu())
    out: dict = {"n": len(x), "dims": x[0].numel(), "data": "8-bit" if x.ndim == 4 else "continuous",
                 "t_draws": t_draws}
    for key, values in parts.items():
        out[f"{key}_bpd"], out[f"{key}_ci95"] = mean_interval(torch.cat(values))
    out["seconds"] = time.perf_counter() - t0
    return out
