"""The evaluation formulas against independent computations: scipy's sqrtm, closed forms, brute force."""
import math

import numpy as np
import pytest
import scipy.linalg
import torch
from sklearn.neighbors import NearestNeighbors

from denoisekit.eval import (classifier_score, frechet_distance, frechet_distance_features, gaussian_stats, mmd,
                             precision_recall, sliced_wasserstein)
from denoisekit.eval.lowdim import wasserstein_1d_squared
from denoisekit.eval.manifold import knn_radii


def _spd(d, g):
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


def test_frechet_matches_scipy_sqrtm():
    g = torch.Generator().manual_seed(0)
    for d in (1, 5, 64):
        mu1, mu2 = torch.randn(d, generator=g, dtype=torch.float64), torch.randn(d, generator=g, dtype=torch.float64)
        c1, c2 = _spd(d, g), _spd(d, g)
        covmean = scipy.linalg.sqrtm(c1.numpy() @ c2.numpy()).real
        ref = float(((mu1 - mu2) ** 2).sum()) + np.trace(c1.numpy() + c2.numpy() - 2 * covmean)
        assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(ref, rel=1e-8, abs=1e-9)


def test_frechet_closed_form_diagonal_and_identity():
    a, b = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 9.0])
    mu1, mu2 = torch.zeros(3), torch.tensor([1.0, 0.0, 2.0])
    ref = 5.0 + float(((a.sqrt() - b.sqrt()) ** 2).sum())  # commuting covariances: sum (sqrt a - sqrt b)^2
    assert frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b)) == pytest.approx(ref, rel=1e-10)
    c = _spd(10, torch.Generator().manual_seed(1))
    assert frechet_distance(torch.zeros(10), c, torch.zeros(10), c) == pytest.approx(0, abs=1e-9)


def test_frechet_of_samples_converges_to_the_gaussians():
    """Monte Carlo: features drawn from two Gaussians approach the analytic distance as N grows."""
    g = torch.Generator().manual_seed(2)
    d = 4
    l1, l2 = torch.randn(d, d, generator=g, dtype=torch.float64), torch.randn(d, d, generator=g, dtype=torch.float64)
    mu1, mu2 = torch.zeros(d, dtype=torch.float64), torch.ones(d, dtype=torch.float64)
    exact = frechet_distance(mu1, l1 @ l1.T, mu2, l2 @ l2.T)
    n = 200_000
    x = mu1 + torch.randn(n, d, generator=g, dtype=torch.float64) @ l1.T
    y = mu2 + torch.randn(n, d, generator=g, dtype=torch.float64) @ l2.T
    assert frechet_distance_features(x, y) == pytest.approx(exact, rel=0.02)
    mu, cov = gaussian_stats(x)
    assert torch.allclose(cov, torch.from_numpy(np.cov(x.numpy().T)), atol=1e-10)


def test_knn_radii_match_brute_force():
    x = torch.randn(300, 7, generator=torch.Generator().manual_seed(3))
    nn = NearestNeighbors(n_neighbors=4).fit(x.numpy())
    dist, _ = nn.kneighbors(x.numpy())  # column 0 is the point itself
    assert torch.allclose(knn_radii(x, 3), torch.from_numpy(dist[:, 3]).float(), atol=1e-5)


def test_precision_falls_off_manifold_and_recall_falls_when_modes_drop():
    g = torch.Generator().manual_seed(4)
    centres = 6 * torch.eye(4, 8)                     # four well-separated modes in 8-D

    def mixture(n, modes):
        k = torch.tensor(modes)[torch.randint(0, len(modes), (n,), generator=g)]
        return centres[k] + torch.randn(n, 8, generator=g)

    real = mixture(2000, [0, 1, 2, 3])
    p, r = precision_recall(real, mixture(2000, [0, 1, 2, 3]))
    assert p > 0.8 and r > 0.8                        # same distribution (k = 3 in 8-D: ~0.85, not 1)
    p_off, r_off = precision_recall(real, mixture(2000, [0, 1, 2, 3]) + torch.tensor([0.0] * 7 + [8.0]))
    assert p_off < 0.1                                # samples shifted off every mode
    p_drop, r_drop = precision_recall(real, mixture(2000, [0]))
    assert p_drop > 0.8 and 0.15 < r_drop < 0.35      # one mode of four: precise but covers a quarter


def test_wasserstein_1d_any_sizes_matches_replication():
    """W_2 between n and m points equals W_2 between the n*m-point replications, where sorting pairs them."""
    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(7, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64) + 1
    ar, br = a.repeat_interleave(5, 0), b.repeat_interleave(7, 0)
    ref = (ar.sort(0).values - br.sort(0).values).square().mean(0)
    assert torch.allclose(wasserstein_1d_squared(a, b), ref, atol=1e-12)
    assert float(wasserstein_1d_squared(a, a.repeat(3, 1)).abs().max()) < 1e-12


def test_sliced_wasserstein_of_shifted_gaussians():
    """Projections of N(0, I) and N(m, I) differ by a shift theta.m, so SW_2^2 = |m|^2 E[theta_1^2] = |m|^2 / D."""
    g = torch.Generator().manual_seed(6)
    d, n = 4, 20000
    m = torch.tensor([2.0, 0, 0, 0])
    x, y = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g) + m
    assert sliced_wasserstein(x, y, projections=2000) == pytest.approx(2.0 / math.sqrt(d), rel=0.05)
    assert sliced_wasserstein(x, x[:5000]) < 0.05


def test_mmd_matches_gaussian_closed_form():
    """For x ~ N(m1, s1^2 I), y ~ N(m2, s2^2 I) in D dimensions and k = exp(-|x-y|^2 / 2h^2):
    E k(x, y) = (h^2 / (h^2 + s1^2 + s2^2))^(D/2) exp(-|m1 - m2|^2 / (2 (h^2 + s1^2 + s2^2)))."""
    d, h, s1, s2 = 2, 1.0, 1.0, 0.5
    m = torch.tensor([1.0, 0.0])

    def ek(var, shift2):
        return (h ** 2 / (h ** 2 + var)) ** (d / 2) * math.exp(-shift2 / (2 * (h ** 2 + var)))

    exact = ek(2 * s1 ** 2, 0) + ek(2 * s2 ** 2, 0) - 2 * ek(s1 ** 2 + s2 ** 2, float(m @ m))
    g = torch.Generator().manual_seed(7)
    estimates = [mmd(s1 * torch.randn(1500, d, generator=g), m + s2 * torch.randn(1500, d, generator=g), [h])
                 for _ in range(4)]
    assert np.mean(estimates) == pytest.approx(exact, rel=0.05)
    same = mmd(torch.randn(1500, d, generator=g), torch.randn(1500, d, generator=g), [h])
    assert abs(same) < 0.01  # unbiased: centred on zero for equal distributions


def test_classifier_score_extremes():
    k = 10
    confident_balanced = 50.0 * torch.eye(k).repeat(20, 1)          # sure of a different class each time
    assert classifier_score(confident_balanced) == pytest.approx(k, rel=1e-6)
    assert classifier_score(50.0 * torch.eye(k)[[3] * 100]) == pytest.approx(1.0, rel=1e-6)  # one class only
    assert classifier_score(torch.zeros(100, k)) == pytest.approx(1.0, rel=1e-6)             # no confidence
