"""The denoiser wrapper and the L_simple loss."""

import pytest
import torch

from denoisekit import Denoiser, DiscreteVP, SimpleLoss
from denoisekit.config import build
from denoisekit.nets import MLP, UNet
from denoisekit.prediction import PREDICTION_TYPES
from gmm import OracleEpsNet


def test_oracle_denoiser_returns_posterior_mean(gmm):
    process = DiscreteVP()
    d = Denoiser(OracleEpsNet(gmm, process), process, "eps").double()
    x_t = torch.randn(50, 2, dtype=torch.float64)
    t = torch.full((50,), 300.0, dtype=torch.float64)
    pred = d(x_t, t)
    ref = gmm.posterior_mean(x_t, process.alpha(t), process.sigma(t))
    assert torch.allclose(pred.x0, ref, atol=1e-10)
    assert torch.allclose(process.q_sample(pred.x0, t, pred.eps), x_t, atol=1e-10)


def test_clip_x0_keeps_x0_and_eps_consistent(gmm):
    process = DiscreteVP()
    d = Denoiser(OracleEpsNet(gmm, process), process, "eps", clip_x0=0.1).double()
    x_t, t = 3 * torch.randn(20, 2, dtype=torch.float64), torch.full((20,), 100.0)
    pred = d(x_t, t)
    assert float(pred.x0.abs().max()) <= 0.1 + 1e-12
    assert torch.allclose(process.q_sample(pred.x0, t, pred.eps), x_t, atol=1e-10)


def test_zero_terminal_snr_refuses_eps():
    with pytest.raises(ValueError, match="zero terminal SNR"):
        Denoiser(MLP(), DiscreteVP(zero_terminal_snr=True), "eps")
    Denoiser(MLP(), DiscreteVP(zero_terminal_snr=True), "v")  # fine


def test_config_round_trip_rebuilds_the_same_model():
    torch.manual_seed(0)
    d = Denoiser(UNet(channels=16, channel_mult=(1, 2), patch_size=2), DiscreteVP("cosine", 500), "edm", 0.4)
    config = d.config()
    d2 = build(config)
    d2.load_state_dict(d.state_dict())
    assert d2.config() == config and d2.process.T == 500 and d2.prediction == "edm"
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(d(x, 100.0).x0, d2(x, 100.0).x0)


@pytest.mark.parametrize("kind", PREDICTION_TYPES)
def test_perfect_network_has_zero_loss(gmm, kind):
    """For data that is one point, the exact denoiser in any parameterisation has zero L_simple."""
    process = DiscreteVP()
    point = torch.tensor([[0.3, -0.2]], dtype=torch.float64)

    class Exact(torch.nn.Module):
        def forward(self, x, c_noise, cond=None):
            return c_noise  # replaced below

    def exact_output(x_t, t, cond=None):
        """Each parameterisation's target written out here, not through the library's converter: a wrong target
        in `from_x0_eps` then leaves a non-zero loss."""
        a, s = process.alpha(t)[:, None], process.sigma(t)[:, None]
        x0 = point.expand_as(x_t)
        eps = (x_t - a * x0) / s
        if kind == "eps":
            return eps
        if kind == "x0":
            return x0
        if kind == "v":
            return a * eps - s * x0                                      # Salimans & Ho 2022
        if kind == "score":
            return -eps / s
        if kind == "flow":
            return eps - x0                                              # Lipman et al. 2023
        level, sd = s / a, 0.5                                           # EDM, Karras et al. 2022, Table 1
        c_skip, c_out = sd**2 / (level**2 + sd**2), level * sd / (level**2 + sd**2).sqrt()
        return (x0 - c_skip * x_t / a) / c_out

    d = Denoiser(Exact(), process, kind).double()
    d.net_output = exact_output
    loss = SimpleLoss()(d, point.expand(64, 2), generator=torch.Generator().manual_seed(0))
    assert float(loss.abs().max()) < 1e-12


def test_lognormal_levels_follow_their_distribution():
    process = DiscreteVP()
    loss = SimpleLoss(t_sampling="lognormal", p_mean=-1.2, p_std=1.2)
    t = loss.sample_t(process, 20000, torch.Generator().manual_seed(0))
    level = process.noise_level(t)
    # inside the process's range the levels are log-normal: compare quantiles with a direct draw
    ref = (-1.2 + 1.2 * torch.randn(20000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)).exp()
    lo, hi = float(process.noise_level(torch.tensor(0.0))), float(process.noise_level(torch.tensor(999.0)))
    ref = ref.clamp(lo, hi)
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):
        assert float(level.quantile(q)) == pytest.approx(float(ref.quantile(q)), rel=0.05)


def test_uniform_t_covers_all_steps():
    t = SimpleLoss().sample_t(DiscreteVP("cosine", T=10), 5000, torch.Generator().manual_seed(0))
    counts = torch.bincount(t.long(), minlength=10)
    assert len(counts) == 10 and int(counts.min()) > 400 and bool((t == t.floor()).all())


def test_min_snr_weighting_equals_x0_space_weighting():
    """min-SNR with eps targets equals min(SNR, gamma) |x0 - x0_hat|^2 computed directly."""
    torch.manual_seed(0)
    process = DiscreteVP()
    d = Denoiser(MLP(hidden=16), process, "eps")
    x0 = torch.rand(32, 2) * 2 - 1
    gens = lambda: torch.Generator().manual_seed(3)
    weighted = SimpleLoss(min_snr_gamma=5.0)(d, x0, generator=gens())
    loss = SimpleLoss(min_snr_gamma=5.0)
    t = loss.sample_t(process, 32, gens())
    g = gens()
    loss.sample_t(process, 32, g)
    eps = torch.randn(x0.shape, generator=g)
    x_t = process.q_sample(x0, t, eps)
    with torch.no_grad():
        x0_hat = d(x_t, t).x0
    snr = process.alpha(t) ** 2 / process.sigma(t) ** 2
    direct = snr.clamp(max=5.0).float() * ((x0_hat - x0) ** 2).mean(1)
    assert torch.allclose(weighted.detach(), direct, rtol=1e-4, atol=1e-7)


def test_loss_bad_arguments():
    with pytest.raises(ValueError, match="t_sampling"):
        SimpleLoss(t_sampling="beta")
    with pytest.raises(ValueError, match="min_snr_gamma"):
        SimpleLoss(min_snr_gamma=-1)


def test_recipe_warns_when_eps_prediction_meets_a_vanishing_alpha():
    """Cosine betas end at alpha = 5e-5: x0 from an eps prediction is then unbounded unless clipped (it ruined a
    20-step sampler in a measured run), so the recipe says so; the linear schedule (alpha = 6e-3) does not warn."""
    import warnings

    from denoisekit.data import ArrayDataset
    from denoisekit.recipes import RunConfig, build_denoiser
    ds = ArrayDataset(torch.zeros(2, 1, 8, 8), name="shape")
    net = {"channels": 8, "channel_mult": [1]}
    with pytest.warns(UserWarning, match="clip_x0"):
        build_denoiser(RunConfig(net=net, process={"schedule": "cosine"}), ds)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_denoiser(RunConfig(net=net, process={"schedule": "cosine"}, clip_x0=1.0), ds)
        build_denoiser(RunConfig(net=net, process={"schedule": "linear"}), ds)
        build_denoiser(RunConfig(net=net, process={"schedule": "cosine"}, prediction="v"), ds)
