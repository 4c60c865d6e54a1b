"""The forward process against independent computations."""
import math

import pytest
import torch

from denoisekit.processes import DiscreteVP
from denoisekit.processes import cosine_alpha_bar, cosine_betas, linear_betas, rescale_zero_terminal_snr


def test_linear_schedule_matches_ddpm():
    b = linear_betas(1000)
    assert b.dtype == torch.float64 and len(b) == 1000
    assert float(b[0]) == pytest.approx(1e-4) and float(b[-1]) == pytest.approx(0.02)
    assert torch.allclose(b[1:] - b[:-1], torch.full((999,), (0.02 - 1e-4) / 999, dtype=torch.float64))


def test_cosine_schedule_matches_its_definition():
    T, s = 1000, 0.008
    ab = torch.cumprod(1 - cosine_betas(T, s), 0)
    t = torch.arange(1, T + 1, dtype=torch.float64)
    f = torch.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2 / math.cos(s / (1 + s) * math.pi / 2) ** 2
    unclipped = slice(0, 990)  # the last betas are clipped at 0.999
    assert torch.allclose(ab[unclipped], f[unclipped], rtol=1e-10, atol=1e-14)
    assert torch.allclose(cosine_alpha_bar(t, T, s), f)


def test_q_sample_matches_iterated_one_step_chain():
    """x_t from the closed form has the mean and variance of iterating q(x_t | x_{t-1}) (Monte-Carlo)."""
    p = DiscreteVP("linear", T=1000)
    g = torch.Generator().manual_seed(0)
    n, x0 = 200_000, torch.full((200_000,), 0.7, dtype=torch.float64)
    x = x0.clone()
    for t in range(300):
        x = (1 - p.betas[t]).sqrt() * x + p.betas[t].sqrt() * torch.randn(n, generator=g, dtype=torch.float64)
    closed = p.q_sample(x0, torch.full((n,), 299.0), torch.randn(n, generator=g, dtype=torch.float64))
    ab = float(p.alpha_bar[299])
    var = 1 - ab
    se_mean = math.sqrt(var / n)               # one standard error of a mean of n draws of variance var
    se_var = var * math.sqrt(2 / (n - 1))      # and of a sample variance of a Gaussian
    assert abs(float(x.mean() - closed.mean())) < 4 * math.sqrt(2) * se_mean  # two independent estimates
    assert abs(float(x.var() - closed.var())) < 4 * math.sqrt(2) * se_var
    assert float(closed.mean()) == pytest.approx(0.7 * math.sqrt(ab), abs=4 * se_mean)
    assert float(closed.var()) == pytest.approx(var, abs=4 * se_var)


@pytest.mark.parametrize("t,s", [(1, 0), (10, 9), (500, 499), (999, 998), (600, 100), (0, -1), (250.5, 17.25)])
def test_posterior_matches_gaussian_conditioning(t, s):
    """q(x_s | x_t, x_0) against conditioning the joint Gaussian of (x_s, x_t) given x_0, in float64."""
    p = DiscreteVP("cosine", T=1000)
    tt, ss = torch.tensor([float(t)], dtype=torch.float64), torch.tensor([float(s)], dtype=torch.float64)
    ab_t, ab_s = float(p.alpha_bar_at(tt)), float(p.alpha_bar_at(ss))
    # x_s = sqrt(ab_s) x0 + sqrt(1-ab_s) e1; x_t = sqrt(ab_t/ab_s) x_s + sqrt(1 - ab_t/ab_s) e2
    a_ts = math.sqrt(ab_t / ab_s)
    var_s = 1 - ab_s
    var_t = a_ts**2 * var_s + (1 - ab_t / ab_s)
    cov = a_ts * var_s
    x0, x_t = torch.tensor([[0.3]], dtype=torch.float64), torch.tensor([[-1.1]], dtype=torch.float64)
    mean_ref = math.sqrt(ab_s) * 0.3 + cov / var_t * (-1.1 - math.sqrt(ab_t) * 0.3)
    var_ref = var_s - cov**2 / var_t
    mean, var = p.posterior(x_t, x0, tt, ss)
    assert float(mean) == pytest.approx(mean_ref, rel=1e-10, abs=1e-12)
    assert float(var) == pytest.approx(var_ref, rel=1e-8, abs=1e-15)


def test_tables_agree_with_the_functions():
    p = DiscreteVP("cosine")
    t = torch.arange(1000, dtype=torch.float64)
    assert p.sigmas.dtype == torch.float64 and p.log_snrs.dtype == torch.float64
    assert torch.allclose(p.sigmas, p.sigma(t)) and torch.allclose(p.log_snrs, p.log_snr(t))
    assert torch.allclose(p.alpha(t) ** 2 + p.sigma(t) ** 2, torch.ones(1000, dtype=torch.float64))


def test_consecutive_steps_give_ddpm_beta_and_beta_tilde():
    p = DiscreteVP()
    t = torch.arange(1, 1000, dtype=torch.float64)
    assert torch.allclose(p.transition_variance(t, t - 1), p.betas[1:], rtol=1e-9)
    beta_tilde = (1 - p.alpha_bar[:-1]) / (1 - p.alpha_bar[1:]) * p.betas[1:]
    _, var = p.posterior(torch.zeros(999, 1, dtype=torch.float64), torch.zeros(999, 1, dtype=torch.float64), t, t - 1)
    assert torch.allclose(var, beta_tilde, rtol=1e-9)


def test_interpolation_is_monotone_and_invertible():
    p = DiscreteVP("cosine")
    t = torch.linspace(-1, 999, 20001, dtype=torch.float64)
    ab = p.alpha_bar_at(t)
    assert bool((ab[1:] < ab[:-1]).all())
    assert torch.allclose(p.alpha_bar_at(torch.arange(1000.0)), p.alpha_bar)
    assert float(p.alpha_bar_at(torch.tensor(-1.0))) == 1.0
    inner = t[(t > -1) & (t < 999)]
    assert torch.allclose(p.t_from_log_snr(p.log_snr(inner)), inner, atol=1e-6)
    assert torch.allclose(p.t_from_noise_level(p.noise_level(inner)), inner, atol=1e-6)


def test_zero_terminal_snr_rescaling():
    b = linear_betas(1000)
    r = rescale_zero_terminal_snr(b)
    ab, ab_r = torch.cumprod(1 - b, 0), torch.cumprod(1 - r, 0)
    assert float(ab_r[-1]) == pytest.approx(0.0, abs=1e-20)
    assert float(ab_r[0]) == pytest.approx(float(ab[0]), rel=1e-12)
    assert bool((ab_r[1:] < ab_r[:-1]).all())
    p = DiscreteVP(zero_terminal_snr=True)
    assert float(p.sigma(torch.tensor(999.0))) == 1.0 and float(p.alpha(torch.tensor(999.0))) == 0.0


def test_custom_betas_and_bad_input():
    p = DiscreteVP(betas=[0.1, 0.2, 0.3])
    assert p.T == 3 and torch.allclose(p.alpha_bar, torch.tensor([0.9, 0.72, 0.504], dtype=torch.float64))
    with pytest.raises(ValueError, match="betas"):
        DiscreteVP(betas=[0.1, 1.5])
    with pytest.raises(ValueError, match="schedule"):
        DiscreteVP("quadratic-ish")
