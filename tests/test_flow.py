"""Flow matching (issue 24, item 4, first part): the straight-path process with its time shift, the velocity
prediction u = eps - x0, the flow-matching loss and its time densities, checked against closed forms, Monte Carlo and
the exact velocity of a Gaussian mixture; through the run config and the CLI."""
import math

import pytest
import torch

from denoisekit.analytic import GaussianMixture
from denoisekit.objectives import FlowMatchingLoss, SimpleLoss
from denoisekit.prediction import from_x0_eps, to_x0_eps, x0_error_scale
from denoisekit.processes import FlowProcess, NoiseProcess
from denoisekit.samplers import sample
from denoisekit.utils import sample_generators
from gmm import assert_reproduces_mixture, mixture_weights


@pytest.mark.parametrize("shift", [1.0, 3.0, 0.5])
def test_the_path_its_shift_and_its_sde(shift):
    """alpha = 1 - s(t), sigma = s(t) with Esser et al.'s s(t) = shift t / (1 + (shift - 1) t); log-SNR inverted;
    f and g^2 in closed form equal the linear SDE of the marginals (autograd)."""
    p = FlowProcess(shift=shift)
    t = torch.linspace(0.01, 0.99, 41, dtype=torch.float64)
    s = shift * t / (1 + (shift - 1) * t)
    torch.testing.assert_close(p.sigma(t), s)
    torch.testing.assert_close(p.alpha(t), 1 - s)
    torch.testing.assert_close(p.t_from_log_snr(p.log_snr(t)), t, rtol=1e-9, atol=1e-12)
    f, g2 = p.sde(t)
    f_auto, g2_auto = NoiseProcess.sde(p, t)
    torch.testing.assert_close(f, f_auto, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g2, g2_auto, rtol=1e-9, atol=1e-12)
    assert p.t_max == pytest.approx(1 - p.t_eps) and float(p.alpha(torch.tensor(0.0))) == 1


def test_the_velocity_prediction_converts_both_ways_on_any_process():
    """u = eps - x0 to (x0, eps) and back, for flow and VP coefficients; and its x0-error scale by perturbation."""
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(6, 5, generator=g, dtype=torch.float64), torch.randn(6, 5, generator=g, dtype=torch.float64)
    for alpha, sigma in ((torch.full((6,), 0.3, dtype=torch.float64), torch.full((6,), 0.7, dtype=torch.float64)),
                         (torch.linspace(0.2, 0.9, 6, dtype=torch.float64),
                          (1 - torch.linspace(0.2, 0.9, 6, dtype=torch.float64) ** 2).sqrt())):
        x_t = alpha[:, None] * x0 + sigma[:, None] * eps
        u = from_x0_eps("flow", x0, eps, x_t, alpha, sigma)
        torch.testing.assert_close(u, eps - x0)
        x0_back, eps_back = to_x0_eps("flow", u, x_t, alpha, sigma)
        torch.testing.assert_close(x0_back, x0)
        torch.testing.assert_close(eps_back, eps)
        d = 1e-3 * torch.randn(6, 5, generator=g, dtype=torch.float64)  # x0 moved at fixed x_t: eps moves too
        u2 = from_x0_eps("flow", x0 + d, (x_t - alpha[:, None] * (x0 + d)) / sigma[:, None], x_t, alpha, sigma)
        ratio = (u2 - u).pow(2).sum(1) / d.pow(2).sum(1)
        torch.testing.assert_close(ratio, x0_error_scale("flow", alpha, sigma))


def test_the_flow_time_densities_have_their_quantiles():
    """logit-normal: t = sigmoid(N(m, s^2)), so its q-quantile is sigmoid(m + s z_q); mode: t = f(u) decreasing, so
    its q-quantile is f(1 - q) (Esser et al. 2024, eq. 19-20)."""
    p = FlowProcess(t_eps=1e-5)
    n = 200_000
    q = torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95], dtype=torch.float64)
    ln = SimpleLoss(t_sampling="logit_normal", logit_mean=-0.5, logit_std=1.3)
    t = ln.sample_t(p, n, torch.Generator().manual_seed(0))
    z = math.sqrt(2) * torch.erfinv(2 * q - 1)
    torch.testing.assert_close(torch.quantile(t, q), torch.sigmoid(-0.5 + 1.3 * z), atol=4e-3, rtol=0)
    for scale in (1.29, -0.5):
        mode = SimpleLoss(t_sampling="mode", mode_scale=scale)
        t = mode.sample_t(p, n, torch.Generator().manual_seed(1))
        u = 1 - q
        expected = 1 - u - scale * (torch.cos(math.pi / 2 * u) ** 2 - 1 + u)
        torch.testing.assert_close(torch.quantile(t, q), expected, atol=4e-3, rtol=0)
    assert float(t.min()) >= p.t_eps and float(t.max()) <= p.t_max


GMM = GaussianMixture.random(dim=4, k=3, seed=2)


def _velocity_net(process, wrong: bool = False, gmm: GaussianMixture = GMM):
    """A network giving the exact E[eps - x0 | x_t] of the mixture (or, `wrong`, E[x0 - eps | x_t])."""
    class Net(torch.nn.Module):
        process_time = True

        def forward(self, x, t, cond=None):
            a, s = process.alpha(t.double())[:, None], process.sigma(t.double())[:, None]
            x0 = gmm.posterior_mean(x.double(), a[:, 0], s[:, 0])
            u = (x.double() - a * x0) / s - x0  # E[eps | x_t] - E[x0 | x_t]
            return (-u if wrong else u).to(x.dtype)
    from denoisekit.denoiser import Denoiser
    return Denoiser(Net(), process, "flow")


def test_the_flow_matching_loss_is_minimised_by_the_conditional_expectation():
    """E|u(x_t) - (eps - x0)|^2 over mixture draws: the exact u* = E[eps - x0 | x_t] has a residual orthogonal to
    functions of x_t (Monte Carlo, within 4 standard errors), which a mis-scaled velocity's is not; the sign-flipped
    velocity's loss is far higher."""
    p = FlowProcess()
    den, wrong = _velocity_net(p), _velocity_net(p, wrong=True)
    loss = FlowMatchingLoss(t_sampling="logit_normal")
    n = 40_000
    x0 = GMM.sample(n, torch.Generator().manual_seed(0))[0]
    g = torch.Generator().manual_seed(3)
    t = loss.sample_t(p, n, g)
    eps = torch.randn(x0.shape, generator=g, dtype=x0.dtype)
    x_t = p.q_sample(x0, t, eps)
    a, s = p.alpha(t), p.sigma(t)
    u_star = den.net_output(x_t, t)
    r = u_star - (eps - x0)
    for h in (x_t, torch.tanh(x_t), torch.ones_like(x_t)):
        prod = (r * h).sum(1)
        assert abs(float(prod.mean())) < 4 * float(prod.std()) / math.sqrt(n)
    prod = ((1.1 * u_star - (eps - x0)) * x_t).sum(1)  # 10% too long: correlated with x_t
    assert abs(float(prod.mean())) > 10 * float(prod.std()) / math.sqrt(n)
    base = float(loss(den, x0, generator=torch.Generator().manual_seed(5)).mean())
    assert float(loss(wrong, x0, generator=torch.Generator().manual_seed(5)).mean()) > 2 * base
    torch.testing.assert_close(a + s, torch.ones_like(a))


def test_the_loss_is_in_velocity_units_whatever_the_prediction():
    """The same network read as x0-, eps- or v-prediction: the loss equals |eps_hat - x0_hat - (eps - x0)|^2 computed
    here by hand from the same draws."""
    p = FlowProcess()
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 3).double()

    class Net(torch.nn.Module):
        def forward(self, x, c, cond=None):
            return net(x) * (1 + c[:, None] / 1000)
    from denoisekit.denoiser import Denoiser
    x0 = torch.randn(64, 3, dtype=torch.float64)
    for prediction in ("flow", "x0", "eps", "v"):
        den = Denoiser(Net(), p, prediction)
        loss = FlowMatchingLoss()
        got = loss(den, x0, generator=torch.Generator().manual_seed(7))
        g = torch.Generator().manual_seed(7)
        t = loss.sample_t(p, 64, g)
        eps = torch.randn(x0.shape, generator=g, dtype=x0.dtype)
        x_t = p.q_sample(x0, t, eps)
        x0_hat, eps_hat = to_x0_eps(prediction, den.net_output(x_t, t), x_t, p.alpha(t), p.sigma(t))
        torch.testing.assert_close(got, ((eps_hat - x0_hat - (eps - x0)) ** 2).mean(1).float())
    flow = Denoiser(Net(), p, "flow")  # with prediction flow it is L_simple
    fm = FlowMatchingLoss()(flow, x0, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(fm, SimpleLoss()(flow, x0, generator=torch.Generator().manual_seed(7)))


@pytest.mark.parametrize("shift", [1.0, 3.0])
@pytest.mark.parametrize("sampler,steps", [("euler", 200), ("heun", 40), ("dpmpp_2m", 25), ("unipc", 20),
                                           ("ddim", 50), ("rk45", 0)])
def test_ode_solvers_with_the_exact_velocity_reproduce_the_mixture(shift, sampler, steps):
    """Each ODE solver on the flow path, driven by the exact velocity: component weights within TV 0.04 and each
    component's mean within its standard error."""
    p = FlowProcess(shift=shift)
    n = 1500
    x_T = p.prior_sample((n, GMM.dim), sample_generators(0, n), dtype=torch.float64)
    x = sample(_velocity_net(p), x_T, sampler, steps or 10, generator=sample_generators(1, n))
    assert_reproduces_mixture(GMM, x, label=sampler)


def test_a_wrong_velocity_does_not_reproduce_the_mixture():
    """The check above has teeth: the sign-flipped velocity misses the mixture."""
    p = FlowProcess()
    n = 1500
    x_T = p.prior_sample((n, GMM.dim), sample_generators(0, n), dtype=torch.float64)
    x = sample(_velocity_net(p, wrong=True), x_T, "heun", 40, generator=sample_generators(1, n))
    means_off = min(float((x.mean(0) - GMM.mu[j]).norm()) for j in range(len(GMM.w)))
    assert 0.5 * float((mixture_weights(GMM, x) - GMM.w).abs().sum()) > 0.04 or means_off > 0.5


# --- reflow and straightness ---------------------------------------------------------------------------------

from denoisekit.samplers import reflow_pairs, straightness  # noqa: E402


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_straightness_is_zero_for_straight_paths_and_the_closed_form_for_a_gaussian(shift):
    """Point-mass data: every path is straight, S = 0. Data N(0, I): the paths are radial, x(s) = z r(s) / r(s_max)
    with r(s) = sqrt((1 - s)^2 + s^2), so S = E z^2 (1/s_max) int_0^s_max (c - r'(s) / r(s_max))^2 ds with
    c = (1 - 1 / r(s_max)) / s_max, computed here by quadrature; the time shift changes the clock, not the paths."""
    p = FlowProcess(shift=shift)
    z = p.prior_sample((2000, 2), torch.Generator().manual_seed(0), dtype=torch.float64)
    point = GaussianMixture([1.0], [[0.7, -0.4]], [1e-4])
    s, x = straightness(_velocity_net(p, gmm=point), z, steps=50)
    assert s < 1e-8 and float((x - torch.tensor([0.7, -0.4], dtype=torch.float64)).abs().max()) < 1e-3
    normal = GaussianMixture([1.0], [[0.0, 0.0]], [1.0])
    s, x = straightness(_velocity_net(p, gmm=normal), z, steps=2000)
    s_max = float(p.sigma(torch.tensor(p.t_max, dtype=torch.float64)))
    r = lambda v: math.sqrt((1 - v) ** 2 + v**2)  # noqa: E731
    grid = torch.linspace(0, s_max, 200_001, dtype=torch.float64)
    dr = (2 * grid - 1) / ((1 - grid) ** 2 + grid**2).sqrt()
    c = (1 - 1 / r(s_max)) / s_max
    integral = float(torch.trapezoid((c - dr / r(s_max)) ** 2, grid)) / s_max
    assert s == pytest.approx(integral * float(z.pow(2).mean()), rel=5e-3)


def test_reflow_straightens_the_paths_and_makes_one_step_samples_good():
    """Pairs from the exact velocity's ODE on the mixture; a small MLP trained on them by the flow-matching loss on
    the pairs has straighter paths than the exact (1-rectified) flow, and its one Euler step lands near each z's
    partner where the exact flow's one step does not (Liu et al. 2023, sec. 2.3)."""
    from denoisekit.denoiser import Denoiser
    from denoisekit.nets import MLP
    p = FlowProcess()
    exact = _velocity_net(p)
    z, x = reflow_pairs(exact, 4000, (GMM.dim,), seed=0, sampler="dpmpp_2m", steps=30)
    torch.manual_seed(0)
    model = Denoiser(MLP(GMM.dim, hidden=128, depth=3), p, "flow")
    loss, opt = FlowMatchingLoss(), torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(1500):
        idx = torch.randint(0, len(z), (256,), generator=g)
        value = loss.on_pairs(model, x[idx].float(), z[idx].float(), generator=g).mean()
        opt.zero_grad()
        value.backward()
        opt.step()
    model.eval()
    z_new, x_new = reflow_pairs(exact, 1000, (GMM.dim,), seed=7, sampler="dpmpp_2m", steps=30)
    s_exact, _ = straightness(exact, z_new, steps=50)
    s_reflow, _ = straightness(model, z_new.float(), steps=50)
    assert s_reflow < 0.05 * s_exact, (s_reflow, s_exact)
    one_exact = sample(exact, z_new, "euler", 1, "uniform")
    with torch.no_grad():
        one_reflow = sample(model, z_new.float(), "euler", 1, "uniform").double()
    err = lambda y: float((y - x_new).pow(2).sum(1).mean())  # noqa: E731
    assert err(one_reflow) < 0.05 * err(one_exact), (err(one_reflow), err(one_exact))


def test_the_coupling_is_per_sample_and_refuses_what_it_cannot_do():
    """Pair i depends only on (seed, i); a stochastic sampler, a non-flow process and a bad step count are one line."""
    from denoisekit.processes import VPSDE
    p = FlowProcess()
    z5, x5 = reflow_pairs(_velocity_net(p), 5, (GMM.dim,), seed=3, sampler="heun", steps=8)
    z3, x3 = reflow_pairs(_velocity_net(p), 3, (GMM.dim,), seed=3, sampler="heun", steps=8)
    torch.testing.assert_close(z5[:3], z3)
    torch.testing.assert_close(x5[:3], x3)
    with pytest.raises(ValueError, match="^sampler: a reflow coupling needs a deterministic ODE solver"):
        reflow_pairs(_velocity_net(p), 2, (GMM.dim,), sampler="dpmpp_2m_sde")
    with pytest.raises(ValueError, match="^process: straightness is measured on the flow path"):
        straightness(GMM.denoiser(VPSDE()), z3)
    with pytest.raises(ValueError, match="^steps: expected a positive integer"):
        straightness(_velocity_net(p), z3, steps=0)


# --- through the run config and the CLI ---------------------------------------------------------------------

from denoisekit.cli import main  # noqa: E402
from test_improved_ddpm import cli  # noqa: E402
from test_reliability import TINY, one_line_error  # noqa: E402


def test_training_and_sampling_flow_matching_through_the_cli(tmp_path):
    """--objective flow brings the flow process and the velocity prediction; ODE samplers run on it; same seed, same
    samples."""
    run = tmp_path / "flow"
    assert main(["train", "--data", "moons", "--out", str(run), "--steps", "30", "--objective", "flow",
                 "--set", "loss.t_sampling=logit_normal", "--set", "process.shift=2", *TINY]) == 0
    from denoisekit.models import load_denoiser
    den, config = load_denoiser(run)
    assert isinstance(den.process, FlowProcess) and den.process.shift == 2 and den.prediction == "flow"
    for sampler in ("euler", "heun", "dpmpp_2m"):
        outs = []
        for k in range(2):
            out = tmp_path / f"{sampler}{k}.npz"
            assert main(["sample", str(run), "--sampler", sampler, "--steps", "6", "--n", "8", "--seed", "3",
                         "--npz", str(out), "--out", str(tmp_path / f"{sampler}{k}.png")]) == 0
            outs.append(out.read_bytes())
        assert outs[0] == outs[1]


@pytest.mark.parametrize("extra,fragments", [
    (["--objective", "flow", "--process", "vp"], ["objective: flow matching", "needs process.kind flow", "VPSDE"]),
    (["--set", "loss.t_sampling=logit_normal"], ["loss.t_sampling: logit_normal", "needs process.kind flow"]),
    (["--process", "vp", "--set", "loss.t_sampling=mode"], ["loss.t_sampling: mode", "needs process.kind flow"]),
    (["--objective", "flow", "--set", "process.shift=0"], ["process.shift: expected a positive number"]),
    (["--objective", "flow", "--set", "loss.mode_scale=3"], ["loss.mode_scale: expected a number in [-1"]),
    (["--objective", "flow", "--set", "loss.logit_std=0"], ["loss.logit_std: expected a positive number"]),
    (["--objective", "flow", "--set", "loss.t_sampling=beta"], ["t_sampling: expected one of", "logit_normal"]),
    (["--objective", "flow", "--set", "loss.min_snr_gamma=5"], ["loss", "min_snr_gamma"]),
])
def test_bad_flow_settings_are_one_line(extra, fragments, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(["train", "--data", "moons", "--out", str(run), "--steps", "3", *TINY, *extra]) == 2
    one_line_error(capsys, *fragments)
    assert not run.exists()


def test_reflow_loss_reads_each_examples_noise_from_the_conditioning():
    """ReflowLoss is the flow-matching loss on the pair (x, Cond.noise): equal to on_pairs with that noise, labels
    passed on, and a one-line error without the noise slot."""
    from denoisekit.conditioning import Cond
    from denoisekit.denoiser import Denoiser
    from denoisekit.objectives import ReflowLoss
    p = FlowProcess()
    seen = []

    def fn(x, t, cond):
        seen.append(cond)
        return x * 0.3 + t[:, None].to(x.dtype)
    den = Denoiser.from_function(fn, p, "flow")
    g = torch.Generator().manual_seed(0)
    x0, z = torch.randn(6, 2, generator=g), torch.randn(6, 2, generator=g)
    labels = torch.arange(6)
    got = ReflowLoss()(den, x0, Cond(label=labels, noise=z), torch.Generator().manual_seed(1))
    want = FlowMatchingLoss().on_pairs(den, x0, z, labels, torch.Generator().manual_seed(1))
    torch.testing.assert_close(got, want)
    assert seen[0].noise is None and torch.equal(seen[0].label, labels)
    with pytest.raises(ValueError, match="needs each example's noise z in Cond.noise"):
        ReflowLoss()(den, x0, labels)


def test_reflow_through_the_cli(tmp_path):
    """denoisekit reflow: pairs drawn once from the teacher's ODE (pair i from (seed, i)) into OUT, a copy of the
    teacher trained on them, sampled by default with 2 Euler steps; running it again reuses the pairs and the stage."""
    from safetensors.torch import load_file
    from denoisekit.models import load_model
    from denoisekit.samplers import sample as draw
    teacher = tmp_path / "flow"
    assert main(["train", "--data", "moons", "--out", str(teacher), "--steps", "20", "--objective", "flow",
                 *TINY]) == 0
    out = tmp_path / "reflow"
    argv = ["reflow", "--teacher", str(teacher), "--out", str(out), "--pairs", "48", "--pair-steps", "4",
            "--steps-per-stage", "6", "--batch-size", "16", "--set", "train.progress=false"]
    assert main(argv) == 0
    pairs = load_file(str(out / "pairs.safetensors"))
    assert pairs["z"].shape == pairs["x"].shape == (48, 2)
    t = load_model(teacher).denoiser
    torch.testing.assert_close(draw(t, pairs["z"][40:44], "dpmpp_2m", 4), pairs["x"][40:44])
    student = load_model(out / "stages" / "01-reflow")
    assert student.denoiser.prediction == "flow" and isinstance(student.denoiser.process, FlowProcess)
    before = (out / "pairs.safetensors").read_bytes()
    assert main(argv) == 0
    assert (out / "pairs.safetensors").read_bytes() == before
    assert main(["sample", str(out / "stages" / "01-reflow"), "--n", "8", "--out", str(tmp_path / "s.png")]) == 0


@pytest.mark.parametrize("extra,fragments", [
    (["--pairs", "0"], ["pairs.n: expected a positive number of couplings"]),
    (["--pair-sampler", "ddpm"], ["pairs.sampler: expected a deterministic ODE solver"]),
    (["--pair-steps", "0"], ["pairs.steps: expected a positive number of solver steps"]),
    (["--prediction", "v"], ["prediction: a reflowed student is a flow"]),
    (["--pairs", "8", "--batch-size", "16"], ["train.batch_size: 16 is larger than the 8 pairs"]),
    (["--set", "pairs.size=3"], ["pairs: expected a mapping of n, sampler, steps, schedule, seed"]),
])
def test_bad_reflow_settings_are_one_line(extra, fragments, tmp_path, capsys, flow_teacher):
    out = tmp_path / "reflow"
    assert cli(["reflow", "--teacher", str(flow_teacher), "--out", str(out), *extra]) == 2
    one_line_error(capsys, *fragments)
    assert not out.exists()


def test_reflow_refuses_a_teacher_that_is_not_a_flow_and_pairs_elsewhere(tmp_path, capsys, flow_teacher):
    ddpm = tmp_path / "ddpm"
    assert main(["train", "--data", "moons", "--out", str(ddpm), "--steps", "3", *TINY]) == 0
    assert cli(["reflow", "--teacher", str(ddpm), "--out", str(tmp_path / "r")]) == 2
    one_line_error(capsys, "--teacher: reflow straightens a flow", "DiscreteVP")
    assert cli(["distill", "--method", "progressive", "--teacher", str(flow_teacher), "--out", str(tmp_path / "d"),
                "--pairs", "10"]) == 2
    one_line_error(capsys, "pairs: only method reflow draws pairs")


@pytest.fixture(scope="module")
def flow_teacher(tmp_path_factory):
    run = tmp_path_factory.mktemp("flow_teacher") / "flow"
    assert main(["train", "--data", "moons", "--out", str(run), "--steps", "3", "--objective", "flow", *TINY]) == 0
    return run
