"""Score matching (issue 12): explicit, sliced and denoising score matching against the closed-form score of a 2-D
Gaussian mixture smoothed at each noise level; Vincent's and Hutchinson's identities by Monte-Carlo; NCSN's noise
ladder; Langevin and annealed Langevin dynamics against their stationary laws and the mixture's weights and means."""
import math

import pytest
import torch

from denoisekit.analytic import GaussianMixture
from denoisekit.processes import VESDE
from denoisekit.denoiser import Denoiser
from denoisekit.processes import NoiseLadder
from denoisekit.nets import MLP
from denoisekit.samplers import sample
from denoisekit.objectives import DSMLoss, ESMLoss, SSMLoss

GMM = GaussianMixture([0.3, 0.7], [[-1.0, -0.5], [1.0, 0.5]], [0.25, 0.35])
VE = VESDE(sigma_min=0.01, sigma_max=5.0)


def scaled_score_error(den, sigma: float, n: int = 8000) -> float:
    """E|u_theta - u*|^2 / E|u*|^2 over x ~ p_sigma, with u = sigma s and u* = sigma grad log p_sigma (closed form)."""
    t = den.process.t_from_noise_level(torch.tensor(sigma, dtype=torch.float64))
    g = torch.Generator().manual_seed(123)
    x0, _ = GMM.sample(n, g)
    x = (x0 + sigma * torch.randn(n, 2, generator=g, dtype=torch.float64)).float()
    with torch.no_grad():
        u = -den(x, t.float().expand(n)).eps.double()
    u_star = sigma * GMM.score(x, 1.0, sigma)
    return float(((u - u_star) ** 2).sum(1).mean() / (u_star**2).sum(1).mean())


def trained(loss, process, steps: int = 800, seed: int = 0) -> Denoiser:
    """An MLP score model fitted by `loss` alone on fresh mixture draws (Adam)."""
    torch.manual_seed(seed)
    den = Denoiser(MLP(2, hidden=128, depth=3), process)
    opt = torch.optim.Adam(den.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x0, _ = GMM.sample(512, g)
        value = loss(den, x0.float(), None, g).mean()
        opt.zero_grad()
        value.backward()
        opt.step()
    return den


@pytest.mark.parametrize("loss", [DSMLoss(sigma=0.1), ESMLoss(sigma=0.1), SSMLoss(sigma=0.1),
                                  SSMLoss(sigma=0.1, variance_reduced=False, distribution="rademacher")],
                         ids=["dsm", "esm", "ssm_vr", "ssm"])
def test_each_objectives_minimiser_approaches_the_true_score(loss):
    """Trained on the mixture at sigma = 0.1, each objective's model has the smoothed mixture's score to within 15%
    (relative squared error); the same network untrained is off by more than 100%."""
    assert scaled_score_error(Denoiser(MLP(2, hidden=128, depth=3), VE), 0.1) > 1.0
    assert scaled_score_error(trained(loss, VE), 0.1) < 0.15


def test_dsm_over_ncsns_ladder_learns_the_smoothed_score_at_every_rung():
    """DSM with lambda = sigma^2 over a 4-rung ladder (NCSN): one model, the smoothed mixture's score at each sigma_i."""
    ladder = NoiseLadder(sigma_min=0.1, sigma_max=2.0, levels=4)
    den = trained(DSMLoss(), ladder)
    for sigma in ladder.sigmas().tolist():
        assert scaled_score_error(den, sigma) < 0.15, sigma


def exact_score_model(process, delta: float = 0.0) -> Denoiser:
    """The mixture's exact score under `process`, plus delta h(x) with h(x) = (sin 2x_1, cos 3x_0), as a score model."""
    def score(x, c):
        t = c.double()  # a plain function is given the process time
        s = GMM.score(x, process.alpha(t)[:, None], process.sigma(t)[:, None])
        h = torch.stack([torch.sin(2 * x[:, 1]), torch.cos(3 * x[:, 0])], 1).double()
        return (s + delta * h).to(x.dtype)
    return Denoiser.from_function(score, process, prediction="score")


@pytest.mark.parametrize("loss_class", [DSMLoss, ESMLoss])
def test_the_optimum_at_each_sigma_is_the_smoothed_mixtures_score(loss_class):
    """E[L(s* + delta h)] - E[L(s*)] = 1/2 sigma^2 delta^2 E|h|^2 / d for both signs of delta, on the same draws: the
    objective is a quadratic whose minimum is s* = grad log p_sigma (Vincent 2011; Hyvarinen 2005), at every rung."""
    n = 100_000
    x0 = GMM.sample(n, torch.Generator().manual_seed(0))[0]
    for sigma in NoiseLadder(sigma_min=0.05, sigma_max=2.0, levels=4).sigmas().tolist():
        loss = loss_class(sigma=sigma)
        base = loss(exact_score_model(VE), x0, None, torch.Generator().manual_seed(1)).double()
        x = x0 + sigma * torch.randn(n, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        h2 = (torch.sin(2 * x[:, 1]) ** 2 + torch.cos(3 * x[:, 0]) ** 2).mean()
        for delta in (0.3 / sigma, -0.3 / sigma):
            diff = loss(exact_score_model(VE, delta), x0, None, torch.Generator().manual_seed(1)).double() - base
            expected = 0.5 * sigma**2 * delta**2 * float(h2) / 2
            diff = diff.detach()
            se = float(diff.std()) / math.sqrt(n)
            assert abs(float(diff.mean()) - expected) < 4 * se + 1e-3 * expected, (sigma, delta)


def test_vincents_identity_and_hutchinsons_estimators_on_an_untrained_network():
    """For any model, E[DSM] - E[ESM] = 1/2 E|eps|^2 / d = 1/2 (Stein's lemma: E[u . eps] = sigma E[tr grad u]); the
    Hutchinson and sliced estimators (plain and variance-reduced, Gaussian and Rademacher) have ESM's expectation."""
    torch.manual_seed(3)
    den = Denoiser(MLP(2, hidden=64, depth=2), VE)
    n = 20_000
    x0 = GMM.sample(n, torch.Generator().manual_seed(0))[0].float()

    def values(loss):
        return loss(den, x0, None, torch.Generator().manual_seed(5)).detach().double()

    esm = values(ESMLoss(sigma=0.5, trace="exact"))
    dsm = values(DSMLoss(sigma=0.5))
    diff = dsm - esm
    assert abs(float(diff.mean()) - 0.5) < 4 * float(diff.std()) / math.sqrt(n)
    for loss in (ESMLoss(sigma=0.5, trace="hutchinson", probes=2), SSMLoss(sigma=0.5),
                 SSMLoss(sigma=0.5, variance_reduced=False), SSMLoss(sigma=0.5, distribution="rademacher")):
        d = values(loss) - esm  # the same x_t (the same generator): only the probes differ
        assert abs(float(d.mean())) < 4 * float(d.std()) / math.sqrt(n) + 1e-6, loss.config()


def test_the_ladder_process():
    """NCSN's sigma_i = sigma_1 (sigma_L / sigma_1)^{(i-1)/(L-1)} on the rungs t = L-1..0, alpha = 1, the data at t = -1,
    its log-SNR inverted exactly, and the 'uniform' schedule visiting the rungs."""
    p = NoiseLadder(sigma_min=0.01, sigma_max=1.0, levels=10)
    torch.testing.assert_close(p.sigmas(), torch.tensor([1.0 * 0.01 ** (i / 9) for i in range(10)],
                                                        dtype=torch.float64))
    t = torch.linspace(-0.99, 9, 57, dtype=torch.float64)
    torch.testing.assert_close(p.t_from_log_snr(p.log_snr(t)), t)
    assert float(p.sigma(torch.tensor(-1.0))) == 0 and p.prior_std == pytest.approx(1.0)
    from denoisekit.samplers import sampling_times
    assert sampling_times(p, 10, "uniform").tolist() == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, -1]


def test_annealed_langevin_with_the_exact_score_reproduces_the_mixture():
    """Annealed Langevin (Song & Ermon 2019, Alg. 1) over a 10-rung ladder with the exact score: the mixture's weights,
    means and stds, with and without the final denoising step."""
    ladder = NoiseLadder(sigma_min=0.01, sigma_max=5.0, levels=10)
    den = exact_score_model(ladder)
    x = ladder.prior_sample((4000, 2), torch.Generator().manual_seed(0), dtype=torch.float64)
    for denoise in (True, False):
        y = sample(den, x, "ald", 10, generator=torch.Generator().manual_seed(1), eps=2e-5, n_steps=100,
                   denoise=denoise)
        left = y[:, 0] < 0
        assert abs(float(left.double().mean()) - 0.3) < 0.04
        for part, k in ((y[left], 0), (y[~left], 1)):
            torch.testing.assert_close(part.mean(0), GMM.mu[k], atol=0.03, rtol=0)
            torch.testing.assert_close(part.std(0), GMM.tau[k], atol=0.04, rtol=0)


@pytest.mark.parametrize("denoise", [True, False])
def test_annealed_langevin_follows_its_exact_gaussian_law(denoise):
    """On data N(mu, tau^2) with the exact score s_i(x) = -(x - mu) / v_i, v_i = tau^2 + sigma_i^2, every annealed
    Langevin step (Song & Ermon 2019, Alg. 1) is linear: x' = (1 - alpha_i / 2 v_i) x + alpha_i mu / 2 v_i +
    sqrt(alpha_i) z, alpha_i = eps sigma_i^2 / sigma_L^2; the final denoising x + sigma_L^2 s_L(x) too. The samples' mean
    and variance within 4 standard errors of that recursion from the prior N(0, sigma_1^2), with too few steps per level
    for the chain to settle (so the law is not the data's): a noise scale off by 5% fails."""
    ladder = NoiseLadder(sigma_min=0.05, sigma_max=3.0, levels=8)
    mu, tau, eps, n_steps, n = 0.7, 0.3, 5e-4, 12, 20000
    one = GaussianMixture([1.0], [[mu, mu]], [tau])
    den = Denoiser.from_function(lambda x, c: one.score(x, 1.0, ladder.sigma(c.double())[:, None]).to(x.dtype),
                                 ladder, prediction="score")
    x = ladder.prior_sample((n, 2), torch.Generator().manual_seed(0), dtype=torch.float64)
    y = sample(den, x, "ald", 8, generator=torch.Generator().manual_seed(1), eps=eps, n_steps=n_steps,
               denoise=denoise)
    sigmas = ladder.sigmas().tolist()
    m, v = 0.0, sigmas[0] ** 2
    for sigma in sigmas:
        alpha, v_i = eps * (sigma / sigmas[-1]) ** 2, tau**2 + sigma**2
        for _ in range(n_steps):
            m, v = m + alpha / (2 * v_i) * (mu - m), (1 - alpha / (2 * v_i)) ** 2 * v + alpha
    if denoise:
        shrink = tau**2 / (tau**2 + sigmas[-1] ** 2)
        m, v = mu + shrink * (m - mu), shrink**2 * v
    assert abs(v - tau**2) > 0.1 * tau**2  # the chain has not settled: the recursion, not the data, is the reference
    assert bool(((y.mean(0) - m).abs() < 4 * math.sqrt(v / n)).all()), (y.mean(0), m)
    assert bool(((y.var(0) - v).abs() < 4 * v * math.sqrt(2 / n)).all()), (y.var(0), v)


def test_langevin_reaches_its_stationary_law():
    """Langevin dynamics x <- x + alpha/2 s + sqrt(alpha) z on N(mu, v) (one component smoothed at sigma_L) from the
    prior: the chain's stationary law, N(mu, v / (1 - alpha / (4 v))) (the unadjusted chain's own variance)."""
    one = GaussianMixture([1.0], [[0.5, -1.0]], [0.4])
    ladder = NoiseLadder(sigma_min=0.3, sigma_max=5.0, levels=10)
    den = Denoiser.from_function(lambda x, c: one.score(x, 1.0, 0.3).to(x.dtype), ladder, prediction="score")
    x = ladder.prior_sample((20000, 2), torch.Generator().manual_seed(0), dtype=torch.float64)
    alpha = 0.05
    y = sample(den, x, "langevin", 10, generator=torch.Generator().manual_seed(1), eps=alpha, n_steps=600,
               denoise=False)
    v = 0.4**2 + 0.3**2
    torch.testing.assert_close(y.mean(0), one.mu[0], atol=0.01, rtol=0)
    torch.testing.assert_close(y.var(0), torch.full((2,), v / (1 - alpha / (4 * v)), dtype=torch.float64),
                               atol=0.006, rtol=0)


# --- the CLI: --objective dsm|ssm|esm, --process ncsn, --sampler ald|langevin -------------------------------------

from denoisekit.cli import main  # noqa: E402
from test_improved_ddpm import cli  # noqa: E402
from test_reliability import TINY, one_line_error  # noqa: E402


@pytest.mark.parametrize("objective,process", [("dsm", "ncsn"), ("ssm", "ncsn"), ("esm", "ncsn"), ("dsm", "ve")])
def test_training_with_each_score_matching_objective_and_sampling_by_langevin(objective, process, tmp_path):
    run = tmp_path / objective
    assert main(["train", "--data", "moons", "--out", str(run), "--steps", "20", "--objective", objective,
                 "--process", process, *TINY[:-2]]) == 0
    from denoisekit.models import load_denoiser
    den, config = load_denoiser(run)
    assert config["run"]["objective"] == objective
    if process == "ncsn":  # the ladder's own sampling defaults: annealed Langevin over its 10 rungs
        assert config["run"]["sample"]["sampler"] == "ald" and config["run"]["sample"]["steps"] == 10
        assert type(den.process).__name__ == "NoiseLadder"
    opts = ["--opt", "n_steps=3"] + (["--opt", "eps=1e-12"] if process == "ve" else [])
    for sampler in ("ald", "langevin"):
        assert main(["sample", str(run), "--sampler", sampler, "--steps", "10", *opts, "--n", "8",
                     "--out", str(tmp_path / f"{sampler}.png")]) == 0


def test_score_matching_trains_a_u_net_through_the_double_backward(tmp_path):
    """Sliced score matching differentiates tr(grad s) through the U-Net (GroupNorm, attention) on images."""
    from test_improved_ddpm import TINY_IMAGES
    run = tmp_path / "ssm"
    assert TINY_IMAGES[-1] == "process.T=50"  # DDPM's, not the ladder's
    assert cli(["train", "--data", "digits", "--out", str(run), "--steps", "2", "--objective", "ssm", "--process",
                "ncsn", *TINY_IMAGES[:-2], "--set", "net.attention_levels=[0]"]) == 0


@pytest.mark.parametrize("extra,fragments", [
    (["--objective", "sm"], ["--objective", "invalid choice"]),
    (["--objective", "dsm", "--set", "loss.sigma=-1"], ["loss.sigma: expected a positive noise level"]),
    (["--objective", "dsm", "--set", "loss.t_sampling=lognormal"], ["loss", "t_sampling"]),
    (["--objective", "esm", "--set", "loss.trace=stochastic"], ["loss.trace: expected one of 'auto', 'exact', 'hutchinson'"]),
    (["--objective", "esm", "--set", "loss.probes=0"], ["loss.probes: expected a positive integer"]),
    (["--objective", "ssm", "--set", "loss.projections=0"], ["loss.projections: expected a positive integer"]),
    (["--objective", "ssm", "--set", "loss.variance_reduced=maybe"], ["loss.variance_reduced"]),
    (["--objective", "ssm", "--set", "loss.distribution=uniform"], ["loss.distribution: expected one of 'rademacher', 'gaussian'"]),
    (["--objective", "dsm", "--set", "learned_variance=true"], ["learned_variance: objective dsm gives the variance"]),
    (["--process", "ncsn", "--set", "process.levels=1"], ["process.levels: expected an integer number of noise"]),
    (["--process", "ncsn", "--set", "process.sigma_min=2"], ["process.sigma_max: expected a number above sigma_min"]),
    (["--process", "ncsn", "--set", "sample.steps=20"], ["sample.steps: 20 uniform steps", "10 trained times"]),
    (["--process", "ncsn", "--set", "sample.options.eps=0.1"], ["sample.options.eps: the Langevin step", "diverges"]),
    (["--process", "ncsn", "--set", "eval.options.n_steps=0"], ["eval.options.n_steps: expected a positive integer"]),
    (["--process", "ncsn", "--set", "sample.options.denoise=1"], ["sample.options.denoise: expected true or false"]),
    (["--objective", "ssm", "--set", "train.compile=true"], ["train.compile: objective ssm differentiates"]),
])
def test_bad_score_matching_settings_are_one_line_before_any_work(extra, fragments, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(["train", "--data", "moons", "--out", str(run), "--steps", "3", *TINY[:-2], *extra]) == 2
    one_line_error(capsys, *fragments)
    assert not run.exists()


@pytest.mark.parametrize("opt,fragment", [("eps=1", "eps: the Langevin step at the smallest level, 1, exceeds"),
                                          ("eps=-1", "eps: expected a positive step size"),
                                          ("n_steps=0", "n_steps: expected a positive integer"),
                                          ("churn=3", "unknown option 'churn'")])
def test_bad_langevin_options_from_the_cli_are_one_line(opt, fragment, tmp_path, capsys):
    run = tmp_path / "ncsn"
    assert main(["train", "--data", "moons", "--out", str(run), "--steps", "2", "--process", "ncsn",
                 "--objective", "dsm", *TINY[:-2]]) == 0
    capsys.readouterr()
    assert main(["sample", str(run), "--sampler", "ald", "--steps", "10", "--opt", opt,
                 "--out", str(tmp_path / "x.png")]) == 2
    one_line_error(capsys, fragment)
    assert not (tmp_path / "x.png").exists()
