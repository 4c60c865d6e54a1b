"""Score-based generative modeling in latent space, end to end (LSGM; Vahdat, Kreis & Kautz 2021): a VAE whose prior
over the latents z0 is a score model on the VP SDE, encoder, decoder and prior trained on one variational bound

    -ELBO(x) = E_q[-log p(x | z0)] - H(q(z0 | x)) + CE(q(z0 | x) || p(z0)),

the cross entropy written through the diffused latents as a weighted denoising score-matching integral over t
(eq. 5-6 of the paper, here in the form that is a bound at every t_eps > 0: the prior's term KL(q(z_1 | z0) ||
N(0, I)), the Gaussian last step D/2 log(2 pi e sigma_eps^2 / alpha_eps^2), and 1/2 int_{t_eps}^1 w_ll(t)
E|eps - eps_hat(z_t, t)|^2 dt with w_ll = beta / sigma^2 = -d log SNR / dt), with t importance-sampled by the
inverse CDF of the weighting (sec. 3.3 and app. F: uniform in log SNR for w_ll, in B(t) = int beta for w_re)."""
from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from ..config import configurable, require
from ..denoiser import Denoiser
from ..nets.vae import KLAutoencoder
from ..processes import VPSDE
from ..train import Phase
from ..utils import Generator, rand, randn
from ..vlb import discretized_gaussian_log_likelihood
from .autoencoder import reconstruction_nll

Weighting = Literal["ll", "un", "re"]
WEIGHTINGS = ("ll", "un", "re")  # likelihood beta / sigma^2, unweighted 1, reweighted beta = g^2 (sec. 3.2)
TIME_SAMPLINGS = ("importance", "uniform")
LOG_2PI_E = math.log(2 * math.pi * math.e)


def check_prior_process(process) -> None:
    """A one-line error unless the prior diffuses on the VP SDE (the paper's case, whose weightings are closed)."""
    if type(process) is not VPSDE:
        raise ValueError(f"process.kind: LSGM's latent prior diffuses on the VP SDE (process.kind vp); got "
                         f"{type(process).__name__}")


def weight(process: VPSDE, weighting: str, t: torch.Tensor) -> torch.Tensor:
    """w(t) of the eps-space score-matching integral: ll beta/sigma^2, un 1, re beta (Vahdat et al. 2021, sec. 3.2)."""
    if weighting == "ll":
        return process.beta(t) / process.sigma(t) ** 2
    if weighting == "re":
        return process.beta(t)
    return torch.ones_like(t)


def draw_times(process: VPSDE, weighting: str, sampling: str, n: int, generator: Generator = None,
               device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(t, c) with t in [t_eps, 1] and E[c f(t)] = int_{t_eps}^1 w(t) f(t) dt: t uniform with c = (1 - t_eps) w(t),
    or importance-sampled from r(t) proportional to w(t) by its inverse CDF, so c is the constant int w (app. F)."""
    lo, hi = torch.tensor(process.t_eps, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)
    u = rand((n,), generator, dtype=torch.float64)
    if sampling == "uniform" or weighting == "un":
        t = lo + u * (hi - lo)
        c = (hi - lo) * weight(process, weighting, t)
    elif weighting == "ll":  # r(t) proportional to -d log SNR / dt: log SNR uniform between its ends
        lam0, lam1 = process.log_snr(lo), process.log_snr(hi)
        t = process.t_from_log_snr(lam0 - u * (lam0 - lam1)).clamp(lo, hi)
        c = (lam0 - lam1).expand(n)
    else:  # re: r(t) proportional to beta(t): B(t) uniform between its ends
        b0, b1 = process.integral(lo), process.integral(hi)
        t = process.t_from_integral(b0 + u * (b1 - b0)).clamp(lo, hi)
        c = (b1 - b0).expand(n)
    return t.to(device), c.to(device)


def score_matching_term(prior: Denoiser, z0: torch.Tensor, t: torch.Tensor, c: torch.Tensor,
                        generator: Generator = None) -> torch.Tensor:
    """1/2 c |eps - eps_hat(z_t, t)|^2 summed over the latent, z_t = alpha z0 + sigma eps: one draw of the weighted
    integral (eq. 6)."""
    eps = randn(z0.shape, generator, device=z0.device, dtype=z0.dtype)
    z_t = prior.process.q_sample(z0, t, eps)
    eps_hat = prior(z_t, t, clip=False).eps
    return 0.5 * c.to(z0.dtype) * (eps - eps_hat).reshape(len(z0), -1).pow(2).sum(1)


def cross_entropy_ends(process: VPSDE, z0: torch.Tensor) -> torch.Tensor:
    """The t-integral's two ends, summed over the latent: KL(q(z_1 | z0) || N(0, I)), the prior's term, plus the
    Gaussian last step's E[-log N(z0; z_eps / alpha_eps, sigma_eps^2 / alpha_eps^2)] = D/2 log(2 pi e s^2 / a^2)."""
    one, lo = (torch.tensor(v, dtype=torch.float64) for v in (1.0, process.t_eps))
    a1, s1 = float(process.alpha(one)), float(process.sigma(one))
    a0, s0 = float(process.alpha(lo)), float(process.sigma(lo))
    d = z0[0].numel()
    prior = 0.5 * ((a1 * z0) ** 2 + s1**2 - 1 - 2 * math.log(s1)).reshape(len(z0), -1).sum(1)
    return prior + 0.5 * d * (LOG_2PI_E + 2 * math.log(s0 / a0))


def cross_entropy(prior: Denoiser, z0: torch.Tensor, sampling: str = "importance",
                  generator: Generator = None) -> torch.Tensor:
    """One-sample estimate of CE(q(z0 | x) || p(z0)) per example in nats, the integral likelihood-weighted: an upper
    bound on -log p(z0) under the prior's reverse SDE for every score model, equal to it for the exact one."""
    t, c = draw_times(prior.process, "ll", sampling, len(z0), generator, z0.device)
    return cross_entropy_ends(prior.process, z0) + score_matching_term(prior, z0, t, c, generator)


def negative_entropy(logvar: torch.Tensor) -> torch.Tensor:
    """-H(q(z0 | x)) = -sum(1/2 log(2 pi e) + 1/2 logvar) for a diagonal Gaussian encoder, per example."""
    return -0.5 * (LOG_2PI_E + logvar).reshape(len(logvar), -1).sum(1)


def decoder_nll(vae: KLAutoencoder, x: torch.Tensor, z0: torch.Tensor) -> torch.Tensor:
    """-log p(x | z0) per example in nats under a Gaussian of mean decode(z0) and the decoder's learned scalar scale
    exp(log_b): for images (8-bit data in [-1, 1]) integrated over each value's bin (Ho et al. 2020, eq. 13), for
    vectors a density."""
    if x.ndim != 4:
        return reconstruction_nll(x, vae.decode_normalised(z0), vae.log_b, "l2").reshape(len(x), -1).sum(1)
    mean = vae.decode_normalised(z0, x.shape[-2:])
    return -discretized_gaussian_log_likelihood(x, mean, vae.log_b.clamp(-7.0, 2.0)).reshape(len(x), -1).sum(1)


@configurable
class LatentScoreModel(nn.Module):
    """The VAE (encoder q(z0 | x), decoder p(x | z0)) and the score prior p(z0) on its latents: one module, so the
    trainer checkpoints, resumes and averages all three; samplers use `prior`, pictures decode through `vae`."""

    def __init__(self, vae: KLAutoencoder, prior: Denoiser, data_shape: list, latent_shape: list):
        super().__init__()
        check_prior_process(prior.process)
        self.vae, self.prior = vae, prior
        self.data_shape, self.latent_shape = tuple(data_shape), tuple(latent_shape)

    @property
    def process(self):
        return self.prior.process

    def decode(self, z0: torch.Tensor) -> torch.Tensor:
        """Images (or vectors) from the prior's latents: the decoder's mean."""
        return self.vae.from_latent(z0, self.data_shape[-2:] if len(self.data_shape) == 3 else None)


def encode_sample(vae: KLAutoencoder, x: torch.Tensor, generator: Generator = None):
    """(z0 ~ q(z0 | x) by reparameterisation, logvar), in the first stage's normalised latent, for the batch."""
    mean, logvar = vae.normalised_posterior(x)
    return mean + (0.5 * logvar).exp() * randn(mean.shape, generator, device=x.device, dtype=mean.dtype), logvar


@configurable
class LSGMLoss:
    """LSGM's training (Vahdat et al. 2021, alg. 1-2), in two phases each step, per data dimension in nats:
    'vae' the bound rec + kl_coeff (-H + CE) with the likelihood-weighted integral (the encoder and decoder learn the
    data's likelihood), stepping the VAE's optimizer; 'prior' 1/2 c |eps - eps_hat|^2 on the VAE's latents (detached)
    with `prior_weighting` ll (the prior's NLL), un or re (sample quality), stepping the prior's (lr x lr_prior).
    The default is un: re, the paper's choice for sample quality, leaves the prior untrained at small t where the
    encoder's likelihood-weighted gradient looks, and diverged on MNIST-5k (the cross entropy rose 8x in 400 steps).

    `t_sampling` importance (the inverse CDF of the weighting, the paper's variance reduction) or uniform.
    `kl_warmup`: steps over which kl_coeff rises linearly from `kl_min` to 1 (the paper's KL warm-up); 0: none.
    `vae_every`: the VAE phase on every k-th step only, the prior's on every step (the paper: 1); a budget's knob, as
    a VAE step costs several prior steps.
    """

    term_names = ("bound", "rec", "neg_entropy", "cross_entropy", "prior")

    def __init__(self, prior_weighting: Weighting = "un", t_sampling: str = "importance", kl_warmup: int = 0,
                 kl_min: float = 0.0, lr_prior: float = 1.0, vae_every: int = 1):
        require(prior_weighting in WEIGHTINGS, "prior_weighting",
                "one of ll (likelihood beta/sigma^2), un (unweighted 1), re (reweighted beta)", prior_weighting)
        require(t_sampling in TIME_SAMPLINGS, "t_sampling", "'importance' (inverse CDF of the weighting) or 'uniform'",
                t_sampling)
        require(isinstance(kl_warmup, int) and not isinstance(kl_warmup, bool) and kl_warmup >= 0, "kl_warmup",
                "a number of steps >= 0", kl_warmup)
        require(0 <= kl_min <= 1, "kl_min", "a coefficient in [0, 1]", kl_min)
        require(lr_prior > 0, "lr_prior", "a positive number (the prior's learning rate / train.lr)", lr_prior)
        require(isinstance(vae_every, int) and not isinstance(vae_every, bool) and vae_every >= 1, "vae_every",
                "a number of steps >= 1 (1: the VAE's phase on every step)", vae_every)
        self.prior_weighting, self.t_sampling = prior_weighting, t_sampling
        self.kl_warmup, self.kl_min, self.lr_prior, self.vae_every = kl_warmup, kl_min, lr_prior, vae_every
        self.step = 0
        self.phases = (Phase("vae", "vae", every=vae_every), Phase("prior", "prior"))

    def parts(self, model: LatentScoreModel) -> dict:
        """The VAE and the prior, each with its own optimizer."""
        if not isinstance(model, LatentScoreModel):
            raise ValueError(f"objective lsgm: trains a VAE and its latent score prior (a LatentScoreModel), not a "
                             f"{type(model).__name__}")
        return {"vae": (model.vae, 1.0), "prior": (model.prior, self.lr_prior)}

    @property
    def kl_coeff(self) -> float:
        if self.kl_warmup == 0 or self.step >= self.kl_warmup:
            return 1.0
        return self.kl_min + (1.0 - self.kl_min) * self.step / self.kl_warmup

    def bound_terms(self, model: LatentScoreModel, x: torch.Tensor, generator: Generator = None) -> dict:
        """The bound's terms per example in nats per data dimension (z0 drawn from q, t as t_sampling says)."""
        return {k: v / x[0].numel() for k, v in bound_nats(model, x, self.t_sampling, generator).items()}

    def terms(self, model: LatentScoreModel, x: torch.Tensor, cond=None, generator: Generator = None,
              phase: str = "vae") -> dict:
        if phase == "vae":
            out = self.bound_terms(model, x, generator)
            loss = out["rec"] + self.kl_coeff * (out["neg_entropy"] + out["cross_entropy"])
            return {"loss": loss, **{k: v.detach() for k, v in out.items()}}
        with torch.no_grad():
            z0 = encode_sample(model.vae, x, generator)[0]
        t, c = draw_times(model.process, self.prior_weighting, self.t_sampling, len(x), generator, x.device)
        prior = score_matching_term(model.prior, z0, t, c, generator) / x[0].numel()
        return {"loss": prior, "prior": prior.detach()}

    def __call__(self, model, x, cond=None, generator: Generator = None) -> torch.Tensor:
        return self.terms(model, x, cond, generator)["loss"]

    def after_step(self, model, step: int) -> None:
        self.step = step

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state.get("step", 0))


def bound_nats(model: LatentScoreModel, x: torch.Tensor, sampling: str = "importance", generator: Generator = None,
               t_draws: int = 1) -> dict:
    """-ELBO's terms per example in nats (rec, neg_entropy, cross_entropy, bound), one z0 ~ q(z0 | x), the cross
    entropy averaged over `t_draws` draws of (t, eps)."""
    z0, logvar = encode_sample(model.vae, x, generator)
    rec, neg_h = decoder_nll(model.vae, x, z0), negative_entropy(logvar)
    ce = torch.stack([cross_entropy(model.prior, z0, sampling, generator) for _ in range(t_draws)]).mean(0)
    return {"rec": rec, "neg_entropy": neg_h, "cross_entropy": ce, "bound": rec + neg_h + ce}


@torch.no_grad()
def lsgm_bound(model: LatentScoreModel, x: torch.Tensor, generator: Generator = None, t_draws: int = 1,
               sampling: str = "importance") -> dict:
    """-ELBO per example in bits per data dimension (8-bit data: a bound on the discrete data's bits/dim), with its
    terms."""
    ln2d = math.log(2) * x[0].numel()
    return {k: v / ln2d for k, v in bound_nats(model, x, sampling, generator, t_draws).items()}
