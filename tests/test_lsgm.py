"""LSGM's bound (Vahdat et al. 2021) against closed forms: the latent cross entropy with the exact score of a Gaussian
prior, the whole -ELBO of a linear-Gaussian VAE, importance sampling of t, and the mixed score."""
import math

import pytest
import torch

from denoisekit import Denoiser
from denoisekit.nets.vae import LinearAutoencoder
from denoisekit.objectives.lsgm import (LSGMLoss, LatentScoreModel, cross_entropy, draw_times, lsgm_bound)
from denoisekit.processes import VPSDE

PROCESS = VPSDE()


def gaussian_prior(m, s) -> Denoiser:
    """The exact eps of N(m, diag(s^2)) diffused on the VP SDE: sigma (z_t - alpha m) / (alpha^2 s^2 + sigma^2)."""
    m, s = torch.tensor(m), torch.tensor(s)

    def eps(z, t):
        a, sg = PROCESS.alpha(t)[:, None], PROCESS.sigma(t)[:, None]
        return sg * (z - a * m) / (a**2 * s**2 + sg**2)
    return Denoiser.from_function(eps, PROCESS, "eps")


def mean_se(v):
    return float(v.mean()), float(v.std() / math.sqrt(len(v)))


@pytest.fixture(autouse=True)
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.mark.parametrize("sampling", ["importance", "uniform"])
def test_cross_entropy_with_the_exact_score_is_the_gaussian_cross_entropy(sampling):
    """E over z0 ~ q, t and eps of the estimator = CE(N(mu, v) || N(m, s^2)) in closed form (within 3 SE)."""
    m, s, mu, v = [0.5, -0.3], [0.7, 1.3], torch.tensor([0.2, 0.4]), torch.tensor([0.09, 0.5])
    g = torch.Generator().manual_seed(0)
    n = 40000
    z0 = mu + v.sqrt() * torch.randn(n, 2, generator=g)
    est = cross_entropy(gaussian_prior(m, s), z0, sampling, g)
    exact = sum(0.5 * (math.log(2 * math.pi * si**2) + (vi + (mui - mi) ** 2) / si**2)
                for mi, si, mui, vi in zip(m, s, mu.tolist(), v.tolist()))
    mean, se = mean_se(est)
    assert abs(mean - exact) < 3 * se + 2e-3, (mean, exact, se)


def test_importance_sampling_lowers_the_variance_at_the_same_mean():
    """For an imperfect score (0.8 of the exact eps), log-SNR-uniform t gives the same mean with lower variance."""
    exact = gaussian_prior([0.0, 0.0], [1.0, 1.0])
    prior = Denoiser.from_function(lambda z, t: 0.8 * exact(z, t).eps, PROCESS, "eps")
    z0 = torch.randn(30000, 2, generator=torch.Generator().manual_seed(1))
    est = {k: cross_entropy(prior, z0, k, torch.Generator().manual_seed(2)) for k in ("importance", "uniform")}
    (mi, si), (mu, su) = mean_se(est["importance"]), mean_se(est["uniform"])
    assert abs(mi - mu) < 3 * math.hypot(si, su)
    assert est["importance"].var() < 0.5 * est["uniform"].var()


def test_importance_times_integrate_each_weighting():
    """E[c f(t)] = int w f dt for f = 1: c's mean is int_{t_eps}^1 w, by the closed forms of each weighting."""
    lo, hi = torch.tensor(PROCESS.t_eps), torch.tensor(1.0)
    exact = {"ll": float(PROCESS.log_snr(lo) - PROCESS.log_snr(hi)), "re": float(PROCESS.integral(hi) -
                                                                                  PROCESS.integral(lo)),
             "un": 1 - PROCESS.t_eps}
    for w, value in exact.items():
        for sampling in ("importance", "uniform"):
            t, c = draw_times(PROCESS, w, sampling, 200000, torch.Generator().manual_seed(3))
            assert ((t >= PROCESS.t_eps) & (t <= 1)).all()
            mean, se = mean_se(c)
            assert abs(mean - value) < 4 * se + 1e-9 * value, (w, sampling, mean, value)


def test_the_bound_of_a_linear_gaussian_vae_is_its_closed_form():
    """-ELBO = E_q[-log N(x; D z + b, e^(2 log_b))] - H(q) + CE(q || N(0, I)) for a linear encoder and decoder and the
    exact prior score: the estimator's mean over z0, t and eps equals the closed form (within 3 SE)."""
    torch.manual_seed(0)
    vae = LinearAutoencoder(dim=3, latent_dim=2)
    with torch.no_grad():
        vae.log_b.fill_(-0.5)
    model = LatentScoreModel(vae, gaussian_prior([0.0, 0.0], [1.0, 1.0]), [3], [2])
    x = torch.tensor([[0.3, -1.0, 0.5]])
    n = 40000
    bits = lsgm_bound(model, x.expand(n, 3), torch.Generator().manual_seed(4))["bound"]
    nats = bits * math.log(2) * 3
    with torch.no_grad():
        mu, logvar = vae.encode(x)
        var = logvar.exp()[0]
        D, b = vae.dec.weight, vae.dec.bias
        r = x[0] - D @ mu[0] - b
        e_sq = float(r @ r + (D**2 @ var).sum())  # E|x - D z - b|^2 over z ~ N(mu, diag(var))
        sb2 = math.exp(2 * -0.5)
        rec = 0.5 * e_sq / sb2 + 3 * (-0.5 + 0.5 * math.log(2 * math.pi))
        neg_h = -float((0.5 * math.log(2 * math.pi * math.e) + 0.5 * logvar[0]).sum())
        ce = float((0.5 * math.log(2 * math.pi) + 0.5 * (var + mu[0] ** 2)).sum())
    mean, se = mean_se(nats)
    assert abs(mean - (rec + neg_h + ce)) < 3 * se + 2e-3, (mean, rec + neg_h + ce, se)


def test_the_mixed_score_mixes_the_gaussian_eps_with_the_networks():
    """eps = (1 - a) sigma x_t / (alpha^2 + sigma^2) + a eps' with a = the initial mixing coefficient."""
    d = Denoiser.from_function(lambda z, t: torch.full_like(z, 2.0), PROCESS, "eps", mixed_score=0.25,
                               mixed_shape=[2])
    z, t = torch.randn(5, 2), torch.full((5,), 0.3)
    a, s = PROCESS.alpha(t)[:, None], PROCESS.sigma(t)[:, None]
    want = 0.75 * s * z / (a**2 + s**2) + 0.25 * 2.0
    assert torch.allclose(d(z, t).eps, want, atol=1e-6)
    assert d.mix_logit.requires_grad and d.mix_logit.shape == (2,)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"mixed_score": 1.5, "mixed_shape": [2]}, "mixed_score: expected the initial mixing coefficient in (0, 1)"),
    ({"mixed_score": 0.0, "mixed_shape": [2]}, "mixed_score: expected"),
    ({"mixed_score": 0.5}, "mixed_shape: expected"),
    ({"mixed_score": 0.5, "mixed_shape": [2], "prediction": "v"}, "mixed_score: mixes the eps"),
])
def test_bad_mixing_settings_are_one_line(kwargs, fragment):
    args = {"prediction": "eps", **kwargs}
    with pytest.raises(ValueError) as e:
        Denoiser.from_function(lambda z, t: z, PROCESS, args.pop("prediction"), **args)
    assert fragment in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"prior_weighting": "likelihood"}, "prior_weighting: expected one of ll"),
    ({"t_sampling": "geometric"}, "t_sampling: expected"),
    ({"kl_warmup": -1}, "kl_warmup: expected"),
    ({"kl_min": 2.0}, "kl_min: expected"),
    ({"lr_prior": 0}, "lr_prior: expected"),
    ({"vae_every": 0}, "vae_every: expected"),
])
def test_bad_loss_settings_are_one_line(kwargs, fragment):
    with pytest.raises(ValueError) as e:
        LSGMLoss(**kwargs)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_a_prior_on_another_process_is_refused():
    from denoisekit.processes import VESDE
    with pytest.raises(ValueError, match="process.kind: LSGM's latent prior diffuses on the VP SDE"):
        LatentScoreModel(LinearAutoencoder(3, 2), Denoiser.from_function(lambda z, t: z, VESDE(), "eps"), [3], [2])


def test_the_vae_phase_steps_the_encoder_and_the_prior_phase_only_sees_detached_latents():
    """The 'vae' phase's loss reaches the encoder through z_t; the 'prior' phase's does not; the KL warm-up rises."""
    torch.manual_seed(0)
    prior = Denoiser(torch.nn.Linear(2, 2), PROCESS, "eps", mixed_score=0.5, mixed_shape=[2])
    prior.net.forward = lambda x, t, cond=None, _f=prior.net.forward: _f(x)
    model = LatentScoreModel(LinearAutoencoder(3, 2), prior, [3], [2])
    loss = LSGMLoss(kl_warmup=10, kl_min=0.1)
    x = torch.randn(8, 3)
    for phase, reaches_encoder in (("vae", True), ("prior", False)):
        model.zero_grad()
        loss.terms(model, x, None, torch.Generator().manual_seed(0), phase=phase)["loss"].mean().backward()
        grad = model.vae.enc.weight.grad
        assert (grad is not None and grad.abs().sum() > 0) == reaches_encoder, phase
        assert prior.mix_logit.grad is not None and prior.mix_logit.grad.abs().sum() > 0
    assert loss.kl_coeff == pytest.approx(0.1)
    loss.after_step(model, 5)
    assert loss.kl_coeff == pytest.approx(0.55)
    assert set(loss.parts(model)) == {"vae", "prior"}
