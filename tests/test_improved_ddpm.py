"""Improved DDPM through the library and the CLI (issue 11): learned variance in the denoiser and the recipe, the
hybrid and vlb losses (the stop-gradient, importance sampling saved with checkpoints), `denoisekit nll`, and the
one-line errors for every new flag and config key."""
import json

import pytest
import torch

from denoisekit.cli import main
from denoisekit.denoiser import Denoiser
from denoisekit.guidance import ClassifierFreeGuidance
from denoisekit.objectives import HybridLoss, VLBLoss
from denoisekit.processes import DiscreteVP
from denoisekit.models import load_denoiser
from denoisekit.train.checkpoint import load_state, load_weights
from denoisekit.train import find_checkpoint

from test_reliability import one_line_error, snapshot

PROCESS = DiscreteVP("linear", 50)
TINY_IMAGES = ["--set", "train.progress=false", "--set", "train.tensorboard=false", "--set", "net.channels=8",
               "--set", "net.channel_mult=[1]", "--set", "net.attention_levels=[]", "--set", "net.num_res_blocks=1",
               "--set", "train.batch_size=16", "--set", "sample.steps=3", "--set", "sample.n=4",
               "--set", "process.T=50"]


def _parametric():
    """A 'network' whose mean and variance outputs have separate parameters."""
    a = torch.nn.Parameter(torch.tensor(0.5))
    b = torch.nn.Parameter(torch.tensor(0.1))

    def net(x, t):
        return torch.cat([a * x, b * torch.ones_like(x)], dim=1)
    return Denoiser.from_function(net, PROCESS, "eps", learned_variance=True), a, b


def _grads(loss, seed=0):
    den, a, b = _parametric()
    x0 = torch.rand(32, 1, 4, 4, generator=torch.Generator().manual_seed(7)) * 2 - 1
    loss(den, x0, None, torch.Generator().manual_seed(seed)).mean().backward()
    return a.grad, b.grad


def test_hybrid_loss_trains_the_variance_through_l_vlb_only():
    """The stop-gradient (Nichol & Dhariwal 2021, sec. 3.1): lam changes the variance's gradient, never the mean's."""
    ga1, gb1 = _grads(HybridLoss(lam=0.001))
    ga2, gb2 = _grads(HybridLoss(lam=1.0))
    torch.testing.assert_close(ga1, ga2)
    assert float(gb1) != 0 and float(gb2) == pytest.approx(1000 * float(gb1), rel=1e-4)
    ga3, gb3 = _grads(VLBLoss(t_sampling="uniform"))
    assert float(ga3) != 0 and float(gb3) != 0  # pure L_vlb trains the mean too


def test_denoiser_splits_learned_variance_once_and_guidance_keeps_the_conditional_v():
    def net(x, t, cond):
        v = torch.where(cond.label.reshape(-1, 1) >= 0, 0.5, -0.5).to(x.dtype).expand_as(x)
        return torch.cat([x * 0.1, v], dim=1)
    den = Denoiser.from_function(net, PROCESS, "eps", learned_variance=True)
    x = torch.randn(3, 2)
    pred = den(x, torch.full((3,), 10.0), torch.tensor([0, 1, 2]))
    assert pred.x0.shape == x.shape and torch.equal(pred.v, torch.full_like(x, 0.75))
    guided = ClassifierFreeGuidance(den, w=2.0)(x, torch.full((3,), 10.0), torch.tensor([0, 1, 2]))
    assert torch.equal(guided.v, torch.full_like(x, 0.75)) and guided.x0.shape == x.shape
    narrow = Denoiser.from_function(lambda x, t: x, PROCESS, "eps", learned_variance=True)
    with pytest.raises(ValueError, match="^learned_variance: the network gives 2 output channels; a model with "
                                         "learned variance needs 4"):
        narrow(x, 10.0)


def cli(argv) -> int:
    """The exit status of `denoisekit ARGV`, argparse's own exits included."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def train(run, *extra, steps=6, data="digits"):
    return cli(["train", "--data", data, "--out", str(run), "--steps", str(steps), *TINY_IMAGES,
                 "--set", "train.checkpoint_every=3", "--set", "train.log_every=1", *extra])


def test_importance_sampling_state_is_saved_and_a_resumed_run_ends_bitwise_where_a_straight_one_does(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert train(straight, "--objective", "vlb") == 0
    assert train(split, "--objective", "vlb", steps=3) == 0
    state = load_state(find_checkpoint(split))
    assert state["loss_state"]["T"] == 50 and int(state["loss_state"]["counts"].sum()) == 3 * 16
    assert train(split, "--objective", "vlb") == 0
    for ema in (False, True):
        a, b = load_weights(find_checkpoint(straight), ema=ema), load_weights(find_checkpoint(split), ema=ema)
        assert all(torch.equal(a[k], b[k]) for k in a)
    final = load_state(find_checkpoint(split))["loss_state"]
    assert int(final["counts"].sum()) == 6 * 16
    den, config = load_denoiser(split)
    assert den.learned_variance and config["loss"]["class"] == "VLBLoss"
    assert den.net.conv_out.out_channels == 2


def test_hybrid_model_samples_with_its_learned_variance_and_reports_nll(tmp_path, capsys):
    run = tmp_path / "hybrid"
    assert train(run, "--objective", "hybrid") == 0
    assert main(["sample", str(run), "--n", "4", "--steps", "5", "--out", str(tmp_path / "s.png")]) == 0
    assert main(["sample", str(run), "--n", "4", "--steps", "5", "--variance", "beta",
                 "--out", str(tmp_path / "b.png")]) == 0
    capsys.readouterr()
    out = tmp_path / "nll.json"
    assert main(["nll", str(run), "--n", "6", "--batch-size", "4", "--terms", "5", "--rtol", "1e-3",
                 "--atol", "1e-3", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "variational bound" in text and "probability-flow ODE" in text
    r = json.loads(out.read_text())
    assert r["n"] == 6 and r["data"] == "8-bit" and r["variance"] == "learned" and r["terms"] == "5 strata"
    for key in ("bound_bpd", "ode_bpd"):
        assert 0 < r[key] < 40 and r[key.replace("bpd", "ci95")] > 0
    # batch size does not change the figures: every example's noise comes from (seed, index)
    assert main(["nll", str(run), "--n", "6", "--batch-size", "6", "--terms", "5", "--method", "bound",
                 "--json", str(tmp_path / "again.json")]) == 0
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["bound_bpd"] == pytest.approx(r["bound_bpd"], rel=1e-5)


@pytest.fixture(scope="module")
def fixed_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("fixed") / "run"
    assert train(run, steps=2) == 0
    return run


@pytest.mark.parametrize("argv,fragments", [
    (["--n", "1"], ["--n: expected an integer >= 2"]),
    (["--batch-size", "0"], ["--batch-size: expected an integer >= 1"]),
    (["--terms", "0"], ["--terms", "positive number of strata"]),
    (["--terms", "many"], ["--terms", "'all' or a positive number"]),
    (["--terms", "51"], ["--terms: the model has T = 50 steps"]),
    (["--rtol", "0"], ["--rtol: expected a positive tolerance"]),
    (["--method", "mcmc"], ["--method", "invalid choice"]),
    (["--probe", "sobol"], ["--probe", "invalid choice"]),
    (["--variance", "learned"], ["variance: 'learned' needs a model trained with learned variance"]),
    (["--json", "out.txt"], ["--json: expected a file name ending in .json"]),
    (["--data", "moons"], ["--data: 'moons' holds [2] data; the model was trained on [1, 8, 8]"]),
    (["--n", "5000"], ["--n: 5000 is more than the data set's 1797 examples"]),
])
def test_nll_bad_input_is_one_line_before_any_work(fixed_run, tmp_path, capsys, monkeypatch, argv, fragments):
    monkeypatch.chdir(tmp_path)
    before = snapshot(fixed_run)
    assert cli(["nll", str(fixed_run), *argv]) == 2
    one_line_error(capsys, *fragments)
    assert snapshot(fixed_run) == before and not (tmp_path / "out.txt").exists()


def test_nll_of_a_missing_checkpoint_is_one_line(tmp_path, capsys):
    assert main(["nll", str(tmp_path / "nowhere")]) == 2
    one_line_error(capsys, "nowhere")


@pytest.mark.parametrize("extra,fragments", [
    (["--objective", "elbo"], ["--objective", "invalid choice"]),
    (["--set", "objective=elbo"], ["objective: expected one of simple, hybrid, vlb"]),
    (["--set", "learned_variance=true"], ["learned_variance: objective simple gives the variance no training signal"]),
    (["--set", "learned_variance=3"], ["learned_variance"]),
    (["--objective", "hybrid", "--set", "loss.lam=-1"], ["loss.lam: expected a positive weight of L_vlb"]),
    (["--objective", "hybrid", "--set", "loss.lam=[1]"], ["loss.lam"]),
    (["--objective", "vlb", "--set", "loss.t_sampling=lognormal"], ["loss.t_sampling", "'importance'"]),
    (["--objective", "vlb", "--set", "loss.lam=0.1"], ["loss", "lam"]),
    (["--objective", "hybrid", "--set", "loss.min_snr_gamma=5"], ["loss", "min_snr_gamma"]),
    (["--objective", "vlb", "--set", "process.T=20", "--set", "eval.steps=10"],
     ["objective: L_vlb's last term needs x0", "alpha = 0"]),
])
def test_new_training_keys_refuse_bad_values_in_one_line(tmp_path, capsys, extra, fragments):
    run = tmp_path / "run"
    assert train(run, *extra) == 2
    one_line_error(capsys, *fragments)
    assert not run.exists()


def test_sampling_a_fixed_variance_model_with_learned_variance_is_one_line(fixed_run, tmp_path, capsys):
    assert main(["sample", str(fixed_run), "--variance", "learned", "--steps", "10",
                 "--out", str(tmp_path / "x.png")]) == 2
    one_line_error(capsys, "variance: 'learned' needs a model trained with learned variance")
    assert not (tmp_path / "x.png").exists()
