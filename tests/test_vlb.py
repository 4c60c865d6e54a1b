"""The variational bound and the likelihoods (issue 11), each against an independent computation: numerical
integration, Gaussian CDFs, improved-diffusion's formulas restated here in numpy, closed-form Gaussian and
Gaussian-mixture densities, and Monte-Carlo checks of the unbiased estimators."""
import math

import numpy as np
import pytest
import torch
from scipy import integrate, special, stats

from denoisekit.analytic import GaussianMixture
from denoisekit.denoiser import Denoiser
from denoisekit.likelihood import mean_interval, ode_log_likelihood, variational_bound
from denoisekit.processes import DiscreteVP
from denoisekit.samplers import ddpm_sample
from denoisekit.samplers import sampling_times
from denoisekit.objectives import ImportanceTimes, UniformTimes
from denoisekit.utils import sample_generators
from denoisekit.vlb import (check_decoder, discretized_gaussian_log_likelihood, model_log_variance, normal_kl,
                            prior_kl, resolve_variance, vlb_term)

LINEAR = DiscreteVP("linear", 1000)


@pytest.mark.parametrize("m1,v1,m2,v2", [(0.0, 1.0, 0.0, 1.0), (0.3, 0.5, -0.2, 2.0), (1.0, 1e-2, 0.9, 3e-2),
                                         (-2.0, 4.0, 1.0, 0.25)])
def test_normal_kl_matches_numerical_integration(m1, v1, m2, v2):
    q, p = stats.norm(m1, math.sqrt(v1)), stats.norm(m2, math.sqrt(v2))
    lo, hi = m1 - 12 * math.sqrt(v1), m1 + 12 * math.sqrt(v1)
    numeric, _ = integrate.quad(lambda x: q.pdf(x) * (q.logpdf(x) - p.logpdf(x)), lo, hi, epsabs=1e-13, limit=200)
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    ours = float(normal_kl(t(m1), t(math.log(v1)), t(m2), t(math.log(v2))))
    assert ours == pytest.approx(numeric, rel=1e-7, abs=1e-10)


@pytest.mark.parametrize("mean,scale", [(0.0, 0.1), (0.37, 0.004), (-0.99, 0.02), (3.0, 0.5), (0.2, 10.0),
                                        (0.999, 1e-3)])
def test_discretized_gaussian_bins_sum_to_one_and_match_cdf_differences(mean, scale):
    x = torch.arange(256, dtype=torch.float64) / 127.5 - 1
    logp = discretized_gaussian_log_likelihood(x, torch.tensor(mean, dtype=torch.float64),
                                               torch.tensor(math.log(scale), dtype=torch.float64))
    p = logp.exp().numpy()
    assert p.sum() == pytest.approx(1.0, abs=1e-9)
    edges = np.concatenate([[-np.inf], (x[:-1].numpy() + x[1:].numpy()) / 2, [np.inf]])
    cdf, sf = stats.norm.cdf(edges, mean, scale), stats.norm.sf(edges, mean, scale)
    expected = np.where(edges[:-1] > mean, sf[:-1] - sf[1:], cdf[1:] - cdf[:-1])  # no cancellation in either tail
    big = expected > 1e-250
    np.testing.assert_allclose(p[big], expected[big], rtol=1e-7, atol=1e-300)
    # in the far tails the log-probabilities stay finite and accurate where the probabilities underflow
    log_expected = np.log(np.clip(expected, 1e-300, None))
    ok = expected > 1e-280
    np.testing.assert_allclose(logp.numpy()[ok], log_expected[ok], rtol=1e-6)
    assert np.isfinite(logp.numpy()).all()


# --- improved-diffusion's bound, restated independently (numpy float64, its own variable names) ------------------

def _iddpm_tables(T=1000):
    betas = np.linspace(1e-4, 0.02, T, dtype=np.float64)
    alphas = 1 - betas
    acp = np.cumprod(alphas)
    acp_prev = np.append(1.0, acp[:-1])
    post_var = betas * (1 - acp_prev) / (1 - acp)
    post_logvar_clipped = np.log(np.append(post_var[1], post_var[1:]))
    coef1 = betas * np.sqrt(acp_prev) / (1 - acp)
    coef2 = (1 - acp_prev) * np.sqrt(alphas) / (1 - acp)
    return dict(betas=betas, acp=acp, post_logvar=post_logvar_clipped, coef1=coef1, coef2=coef2)


def _np_kl(m1, lv1, m2, lv2):
    return 0.5 * (-1 + lv2 - lv1 + np.exp(lv1 - lv2) + (m1 - m2) ** 2 * np.exp(-lv2))


def _np_discretized(x, means, log_scales):
    """improved-diffusion's discretized_gaussian_log_likelihood, with the exact normal CDF for its tanh approximation."""
    centered = x - means
    inv = np.exp(-log_scales)
    cdf_plus, cdf_min = special.ndtr(inv * (centered + 1 / 255)), special.ndtr(inv * (centered - 1 / 255))
    log_cdf_plus = np.log(np.maximum(cdf_plus, 1e-12))
    log_one_minus_cdf_min = np.log(np.maximum(1 - cdf_min, 1e-12))
    log_delta = np.log(np.maximum(cdf_plus - cdf_min, 1e-12))
    return np.where(x < -0.999, log_cdf_plus, np.where(x > 0.999, log_one_minus_cdf_min, log_delta))


def _fake_net(x, t):
    """A fixed 'network' with learned variance: eps and v' (2x the channels), smooth in x and t."""
    tt = t.reshape(-1, *[1] * (x.ndim - 1)).to(x.dtype) / 1000
    return torch.cat([0.8 * torch.tanh(x + tt), torch.tanh(2 * x - 0.5 + tt)], dim=1)


def test_bound_terms_match_improved_diffusions_formulas():
    tab = _iddpm_tables()
    den = Denoiser.from_function(_fake_net, LINEAR, "eps", learned_variance=True)
    g = torch.Generator().manual_seed(0)
    x0 = (torch.randint(0, 256, (4, 1, 4, 4), generator=g).double() / 127.5 - 1)
    for t in (0, 1, 2, 17, 500, 999):
        noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
        tt = torch.full((4,), float(t), dtype=torch.float64)
        x_t = LINEAR.q_sample(x0, tt, noise)
        ours = vlb_term(den, x0, tt, x_t=x_t, decoder="discretized").numpy()
        # improved-diffusion's _vb_terms_bpd
        out = _fake_net(x_t, tt).numpy()
        eps, var_values = out[:, :1], out[:, 1:]
        frac = (var_values + 1) / 2
        model_logvar = frac * np.log(tab["betas"][t]) + (1 - frac) * tab["post_logvar"][t]
        xt, x0n = x_t.numpy(), x0.numpy()
        pred_x0 = np.sqrt(1 / tab["acp"][t]) * xt - np.sqrt(1 / tab["acp"][t] - 1) * eps
        model_mean = tab["coef1"][t] * pred_x0 + tab["coef2"][t] * xt
        true_mean = tab["coef1"][t] * x0n + tab["coef2"][t] * xt
        if t == 0:
            term = -_np_discretized(x0n, model_mean, 0.5 * model_logvar)
        else:
            term = _np_kl(true_mean, tab["post_logvar"][t], model_mean, model_logvar)
        theirs = term.reshape(4, -1).mean(1) / math.log(2)
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, err_msg=f"t={t}")
    # the prior term: KL(q(x_T | x_0) || N(0, I))
    mean_T = np.sqrt(tab["acp"][-1]) * x0.numpy()
    theirs = _np_kl(mean_T, np.log(1 - tab["acp"][-1]), 0.0, 0.0).reshape(4, -1).mean(1) / math.log(2)
    np.testing.assert_allclose(prior_kl(LINEAR, x0).numpy(), theirs, rtol=1e-6)


def test_learned_variance_interpolates_between_the_times_visited_under_respacing():
    times = sampling_times(LINEAR, 20, "uniform")
    t, s = times[:-2], times[1:-1]          # respaced pairs, e.g. (999, 949)
    beta = LINEAR.transition_variance(t, s)
    tilde = LINEAR.posterior_coefficients(t, s)[2]
    ones = torch.ones(len(t), dtype=torch.float64)
    torch.testing.assert_close(model_log_variance(LINEAR, t, s, "learned", ones), beta.log())
    torch.testing.assert_close(model_log_variance(LINEAR, t, s, "learned", 0 * ones), tilde.log())
    assert bool((beta > tilde).all()) and float(t[0] - s[0]) > 1  # a respaced beta is not the trained one
    # the respaced beta is improved-diffusion's: 1 - alpha-bar_t / alpha-bar_s
    ab = LINEAR.alpha_bar
    torch.testing.assert_close(beta, 1 - ab[t.long()] / ab[s.long()])


@pytest.mark.parametrize("v,fixed", [(-1.0, "beta_tilde"), (1.0, "beta")])
def test_ancestral_sampler_with_learned_variance_at_the_ends_equals_the_fixed_ones(v, fixed):
    gm = GaussianMixture.random(dim=2, k=3, seed=1)
    exact = gm.denoiser(LINEAR)

    def net(x, t):
        return torch.cat([exact.net(x, t), torch.full_like(x, v)], dim=1)
    learned = Denoiser.from_function(net, LINEAR, "x0", learned_variance=True)
    times = sampling_times(LINEAR, 25, "uniform")
    x_T = LINEAR.prior_sample((64, 2), sample_generators(0, 64), dtype=torch.float64)
    a = ddpm_sample(learned, x_T, times, generator=sample_generators(1, 64))   # 'learned' by default
    b = ddpm_sample(exact, x_T, times, variance=fixed, generator=sample_generators(1, 64))
    torch.testing.assert_close(a, b)


def test_a_fixed_variance_model_refuses_learned_variance_and_data_outside_the_8bit_range():
    fixed = GaussianMixture.random(dim=2, k=2).denoiser(LINEAR)
    with pytest.raises(ValueError, match="^variance: 'learned' needs a model trained with learned variance"):
        resolve_variance(fixed, "learned")
    with pytest.raises(ValueError, match="^variance: 'learned' needs"):
        ddpm_sample(fixed, torch.zeros(2, 2, dtype=torch.float64), sampling_times(LINEAR, 5, "uniform"),
                    variance="learned")
    with pytest.raises(ValueError, match=r"^decoder: the 8-bit discretized Gaussian decoder needs data in \[-1, 1\]"):
        check_decoder("discretized", torch.tensor([0.0, 2.0]))
    with pytest.raises(ValueError, match=r"^decoder: the 8-bit"):
        variational_bound(fixed, torch.full((3, 2), 1.5, dtype=torch.float64), decoder="discretized", terms=4)
    with pytest.raises(ValueError, match="^decoder: expected"):
        check_decoder("laplace", torch.zeros(2))


# --- Gaussian data with its exact model ---------------------------------------------------------------------

def _gaussian(d=4):
    return GaussianMixture([1.0], torch.full((1, d), 0.3, dtype=torch.float64), torch.full((1, d), 0.5))


def test_bound_of_the_exact_model_on_gaussian_data_is_above_the_true_nll_and_close_to_it():
    gm, d = _gaussian(), 4
    x, _ = gm.sample(512, torch.Generator().manual_seed(1))
    true_bpd = -gm.log_density(x) / (d * math.log(2))
    den = gm.denoiser(LINEAR)
    gaps = {}
    for variance in ("beta", "beta_tilde"):
        bound = variational_bound(den, x, variance=variance, decoder="gaussian", generator=sample_generators(2, 512))
        mean, half = mean_interval(bound.total - true_bpd)
        assert mean - half > 0, (variance, mean, half)  # E[bound] - NLL = E[KL(q(x_1:T | x_0) || p(x_1:T | x_0))]
        gaps[variance] = mean
    # for smooth data the true reverse variance is ~beta (Ho et al. 2020, sec. 3.2), so sigma^2 = beta is nearly tight;
    # most of its gap, ~0.16 bits/dim, is the decoder, whose variance is beta-tilde_1 (improved-diffusion's choice)
    assert gaps["beta"] < 0.25 and gaps["beta_tilde"] > 3 * gaps["beta"], gaps


def test_stratified_bound_is_unbiased_for_the_full_one():
    gm = _gaussian(2)
    den = gm.denoiser(DiscreteVP("linear", 200))
    x, _ = gm.sample(2000, torch.Generator().manual_seed(3))
    full = variational_bound(den, x, variance="beta", decoder="gaussian", generator=sample_generators(4, 2000))
    strat = variational_bound(den, x, terms=40, variance="beta", decoder="gaussian",
                              generator=sample_generators(5, 2000))
    mean, half = mean_interval(strat.total - full.total)
    assert abs(mean) < 1.3 * half and half < 0.2, (mean, half)  # within 2.5 standard errors
    assert float(strat.total.std()) > float(full.total.std())  # it does sample: a noisier estimate


def test_ode_likelihood_of_gaussian_data_equals_the_true_nll():
    """With the cosine schedule the prior N(0, I) is p_T up to 1e-9, so the ODE's density is the exact p_{t_eps}."""
    gm, d = _gaussian(), 4
    process = DiscreteVP("cosine", 1000)
    x, _ = gm.sample(32, torch.Generator().manual_seed(1))
    t0 = torch.tensor(process.t_eps, dtype=torch.float64)
    exact = gm.log_density(x, process.alpha(t0), process.sigma(t0))
    stats_ = {}
    ll = ode_log_likelihood(gm.denoiser(process), x, probe="exact", rtol=1e-7, atol=1e-7, stats=stats_)
    assert float((ll - exact).abs().max()) < 1e-3
    # and p_{t_eps} is the data density up to the first step's smoothing
    assert float((ll - gm.log_density(x)).abs().max()) / d < 0.01
    assert stats_["nfe"] > 10


def test_ode_log_density_on_a_gaussian_mixture_matches_the_exact_one_and_hutchinson_is_unbiased():
    gm = GaussianMixture.random(dim=2, k=6, seed=4)
    den = gm.denoiser(LINEAR)
    x, _ = gm.sample(24, torch.Generator().manual_seed(5))
    t0 = torch.tensor(LINEAR.t_eps, dtype=torch.float64)
    exact = gm.log_density(x, LINEAR.alpha(t0), LINEAR.sigma(t0))
    ll = ode_log_likelihood(den, x, probe="exact")
    assert float((ll - exact).abs().max()) / 2 < 0.01  # nats per dimension
    # Hutchinson: one probe per copy of a point, 256 copies; the mean is the exact value within its noise
    xs = x[:2].repeat_interleave(128, 0)
    for probe in ("rademacher", "gaussian"):
        est = ode_log_likelihood(den, xs, probe=probe, generator=sample_generators(6, len(xs)))
        for i in range(2):
            mean, half = mean_interval(est[i * 128:(i + 1) * 128])
            assert abs(mean - float(ll[i])) < max(1.3 * half, 2e-3), (probe, i, mean, half, float(ll[i]))


def test_ode_likelihood_refuses_bad_settings():
    den = _gaussian(2).denoiser(LINEAR)
    x = torch.zeros(2, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="^probe: expected"):
        ode_log_likelihood(den, x, probe="sobol")
    with pytest.raises(ValueError, match="^rtol: expected a positive number"):
        ode_log_likelihood(den, x, rtol=0)
    with pytest.raises(ValueError, match="^t_eps: expected a time"):
        ode_log_likelihood(den, x, t_eps=-1.0)
    with pytest.raises(ValueError, match="^probe: 'exact' evaluates the network on d = 300 copies"):
        ode_log_likelihood(Denoiser.from_function(lambda x, t: x, LINEAR), torch.zeros(2, 300), probe="exact")


# --- importance sampling of t ------------------------------------------------------------------------------

def test_importance_sampler_is_uniform_until_warm_then_proportional_to_rms_loss_and_unbiased():
    T = 40
    sampler = ImportanceTimes(T, history=10)
    g = torch.Generator().manual_seed(0)
    table = torch.exp(-torch.arange(T, dtype=torch.float64) / 8) + 0.01   # L_t falls steeply with t
    for _ in range(9):
        sampler.update(torch.arange(T), table)
    assert not sampler.warm
    torch.testing.assert_close(sampler.probabilities(), UniformTimes(T).probabilities())
    noisy = lambda idx: table[idx] * (1 + 0.2 * torch.randn(len(idx), generator=g, dtype=torch.float64))  # noqa
    idx = torch.arange(T)
    sampler.update(idx, noisy(idx))
    assert sampler.warm
    rms = sampler.values.pow(2).mean(1).sqrt()
    p = sampler.probabilities()
    torch.testing.assert_close(p, 0.999 * rms / rms.sum() + 0.001 / T)
    # unbiased: E_{t ~ p}[L_t / (T p_t)] = (1/T) sum_t L_t
    idx, w = sampler.draw(400_000, g)
    est = w * table[idx]
    mean, half = mean_interval(est)
    assert abs(mean - float(table.mean())) < half * 1.5
    counts = torch.bincount(idx, minlength=T).double() / len(idx)
    torch.testing.assert_close(counts, p, atol=3e-3, rtol=0.05)
    # its variance is lower than uniform sampling's for this steep L_t
    u_idx, u_w = UniformTimes(T).draw(400_000, g)
    assert float(est.var()) < 0.5 * float((u_w * table[u_idx]).var())


def test_importance_sampler_state_round_trips_and_refuses_a_mismatched_one():
    a = ImportanceTimes(5, history=3)
    a.update(torch.tensor([0, 1, 1, 4]), torch.tensor([1.0, 2.0, 3.0, 4.0]))
    b = ImportanceTimes(5, history=3)
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(b.values, a.values)
    torch.testing.assert_close(b.counts, a.counts)
    with pytest.raises(ValueError, match="importance sampler's state does not fit"):
        ImportanceTimes(6, history=3).load_state_dict(a.state_dict())
