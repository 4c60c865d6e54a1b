"""The prediction converter as round trips, and EDM's preconditioning against its definition."""
import pytest
import torch

from denoisekit.prediction import (PREDICTION_TYPES, edm_coefficients, from_x0_eps, to_x0_eps,
                                   x0_error_scale)


def _setup(vp: bool):
    g = torch.Generator().manual_seed(0)
    n = 64
    alpha = torch.rand(n, generator=g, dtype=torch.float64) * 0.98 + 0.01
    sigma = (1 - alpha**2).sqrt() if vp else torch.rand(n, generator=g, dtype=torch.float64) * 5 + 0.01
    x0 = torch.randn(n, 3, 4, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(n, 3, 4, 4, generator=g, dtype=torch.float64)
    x_t = alpha[:, None, None, None] * x0 + sigma[:, None, None, None] * eps
    return x0, eps, x_t, alpha, sigma


@pytest.mark.parametrize("kind", PREDICTION_TYPES)
@pytest.mark.parametrize("vp", [True, False])
def test_round_trip(kind, vp):
    x0, eps, x_t, alpha, sigma = _setup(vp)
    out = from_x0_eps(kind, x0, eps, x_t, alpha, sigma)
    x0_back, eps_back = to_x0_eps(kind, out, x_t, alpha, sigma)
    assert torch.allclose(x0_back, x0, atol=1e-9) and torch.allclose(eps_back, eps, atol=1e-9)


def test_v_and_score_definitions():
    x0, eps, x_t, alpha, sigma = _setup(True)
    a, s = alpha[:, None, None, None], sigma[:, None, None, None]
    assert torch.allclose(from_x0_eps("v", x0, eps, x_t, alpha, sigma), a * eps - s * x0)
    assert torch.allclose(from_x0_eps("score", x0, eps, x_t, alpha, sigma), -eps / s)


def test_edm_coefficients_match_karras_table_1():
    sigma, sd = torch.tensor([0.002, 0.5, 80.0], dtype=torch.float64), 0.5
    c_skip, c_out, c_in, c_noise = edm_coefficients(sigma, sd)
    assert torch.allclose(c_skip, sd**2 / (sigma**2 + sd**2))
    assert torch.allclose(c_out, sigma * sd / (sigma**2 + sd**2).sqrt())
    assert torch.allclose(c_in, 1 / (sd**2 + sigma**2).sqrt())
    assert torch.allclose(c_noise, sigma.log() / 4)
    # EDM's loss weight lambda(sigma) = (sigma^2 + sd^2)/(sigma sd)^2 makes the effective F weight 1
    assert torch.allclose((sigma**2 + sd**2) / (sigma * sd) ** 2 * c_out**2, torch.ones(3, dtype=torch.float64))


@pytest.mark.parametrize("kind", PREDICTION_TYPES)
def test_x0_error_scale_matches_autograd(kind):
    """|d target / d x0|^2 at fixed x_t, the factor between x0-space and target-space squared errors."""
    x0, eps, x_t, alpha, sigma = _setup(True)
    x0 = x0[:, :1, :1, :1].clone().requires_grad_(True)
    x_t = x_t[:, :1, :1, :1]
    eps_of_x0 = (x_t - alpha[:, None, None, None] * x0) / sigma[:, None, None, None]
    target = from_x0_eps(kind, x0, eps_of_x0, x_t, alpha, sigma)
    (grad,) = torch.autograd.grad(target.sum(), x0)
    assert torch.allclose(grad.flatten() ** 2, x0_error_scale(kind, alpha, sigma), rtol=1e-9)


def test_unknown_prediction_type():
    x0, eps, x_t, alpha, sigma = _setup(True)
    with pytest.raises(ValueError, match="prediction"):
        to_x0_eps("epsilon", x0, x_t, alpha, sigma)
