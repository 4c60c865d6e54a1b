"""Critically-damped Langevin diffusion (issue 24, items 1-3): the process's mean and covariance against a simulation of
its SDE and a matrix exponential, hybrid score matching's minimiser, the velocity score of a Gaussian mixture through
EM, the probability-flow ODE and SSCS, SSCS against EM at equal NFE, and the run config and command line."""
import math

import pytest
import torch

from denoisekit.analytic import GaussianMixture
from denoisekit.denoiser import CLDDenoiser
from denoisekit.eval import sliced_wasserstein
from denoisekit.objectives import HSMLoss
from denoisekit.processes import CLDProcess
from denoisekit.samplers import sample
from denoisekit.utils import sample_generators
from gmm import assert_reproduces_mixture

MIX = GaussianMixture([0.2, 0.5, 0.3], [[-1.0, 0.5], [0.8, 0.8], [0.3, -1.0]], [0.1, 0.15, 0.1])


def general(process: CLDProcess) -> CLDProcess:
    """The same process computed by the matrix exponentials (the path of non-critical damping)."""
    process.critical = False
    return process


def test_mean_and_covariance_match_a_simulation_of_the_forward_sde():
    """x0 fixed, v0 ~ N(0, gamma M): Euler-Maruyama on du = A u beta dt + G dw with small steps gives the closed-form
    mean (within 4 standard errors) and covariance (within 3%)."""
    p = CLDProcess()
    g = torch.Generator().manual_seed(0)
    n, dt, T, x0 = 50_000, 5e-4, 0.3, 0.7
    x = torch.full((n,), x0, dtype=torch.float64)
    v = torch.randn(n, generator=g, dtype=torch.float64) * math.sqrt(p.gamma * p.M)
    for _ in range(int(round(T / dt))):
        dv = -(x + p.damping * p.mass_inv * v) * p.beta * dt
        x = x + p.mass_inv * p.beta * v * dt
        v = v + dv + math.sqrt(2 * p.damping * p.beta * dt) * torch.randn(n, generator=g, dtype=torch.float64)
    mx, mv, *_ = p.coefficients(torch.tensor(T))
    cov = p.covariance(torch.tensor(T))
    for sim, exact, var in ((x, x0 * mx, cov[0, 0]), (v, x0 * mv, cov[1, 1])):
        assert abs(float(sim.mean() - exact)) < 4 * math.sqrt(float(var) / n)
    torch.testing.assert_close(torch.cov(torch.stack([x, v])), cov, rtol=0.03, atol=2e-3)


@pytest.mark.parametrize("mass_inv,damping,critical", [(4.0, 1.0, True), (1.0, 2.0, True), (4.0, 2.5, False),
                                                       (4.0, 0.4, False)])
def test_covariance_solves_the_lyapunov_equation_and_composes(mass_inv, damping, critical):
    """Sigma(B) against RK4 on dSigma/dB = A Sigma + Sigma A^T + diag(0, 2 Gamma) in float64 (critical, over- and
    under-damped); Phi and Q compose over two steps (Q(b1 + b2) = Phi(b2) Q(b1) Phi(b2)^T + Q(b2)); the closed form
    of critical damping equals the matrix exponentials."""
    p = CLDProcess(mass_inv=mass_inv, damping=damping, critical=critical)
    A = p.A
    D = torch.tensor([[0.0, 0.0], [0.0, 2 * damping]], dtype=torch.float64)
    S = torch.diag(torch.tensor([0.0, p.gamma * p.M], dtype=torch.float64))
    h, B = 1e-3, 2.0
    f = lambda S: A @ S + S @ A.T + D  # noqa: E731
    for _ in range(int(B / h)):
        k1 = f(S); k2 = f(S + h / 2 * k1); k3 = f(S + h / 2 * k2); k4 = f(S + h * k3)  # noqa: E702
        S = S + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    torch.testing.assert_close(p.covariance(torch.tensor(B / p.beta)), S, rtol=1e-6, atol=1e-9)
    b1, b2 = torch.tensor(0.3, dtype=torch.float64), torch.tensor(0.9, dtype=torch.float64)
    torch.testing.assert_close(p.transition(b1 + b2), p.transition(b2) @ p.transition(b1))
    phi = p.transition(b2)
    torch.testing.assert_close(p.noise_covariance(b1 + b2), phi @ p.noise_covariance(b1) @ phi.T
                               + p.noise_covariance(b2))
    if critical:
        t = torch.tensor([1e-5, 1e-3, 0.05, 0.4, 1.0], dtype=torch.float64)
        closed = p.covariance(t)
        torch.testing.assert_close(general(p).covariance(t), closed, rtol=1e-7, atol=1e-15)


def test_perturbation_the_x0_formula_and_the_gaussian_part():
    """u_t = mean + L eps with L L^T = Sigma_t; x0_from_eps_v inverts it given the true eps_v; the mixed score's
    Gaussian part is -L22 times the autograd velocity score of N(0, Sigma_t(var0x = 1)); the prior is N(0, I) x N(0, M)."""
    p = CLDProcess()
    g = torch.Generator().manual_seed(1)
    t = torch.tensor([0.002, 0.05, 0.3, 0.9], dtype=torch.float64)
    x0 = torch.randn(4, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(4, 6, generator=g, dtype=torch.float64)
    u = p.q_sample(x0, t, eps)
    mx, mv, l11, l21, l22 = p.coefficients(t)
    cov = p.covariance(t)
    torch.testing.assert_close(l11**2, cov[:, 0, 0])
    torch.testing.assert_close(l21**2 + l22**2, cov[:, 1, 1])
    torch.testing.assert_close(l11 * l21, cov[:, 0, 1])
    torch.testing.assert_close(p.x0_from_eps_v(u, eps[:, 3:], t), x0, rtol=1e-7, atol=1e-8)
    cg = p.covariance(t, var0x=1.0)
    uu = u.clone().requires_grad_(True)
    x, v = uu[:, :3], uu[:, 3:]
    inv = torch.linalg.inv(cg)
    quad = inv[:, 0, 0, None] * x**2 + 2 * inv[:, 0, 1, None] * x * v + inv[:, 1, 1, None] * v**2
    score = torch.autograd.grad(-0.5 * quad.sum(), uu)[0][:, 3:]
    torch.testing.assert_close(p.gaussian_eps_v(u, t), -l22[:, None] * score)
    prior = p.prior_sample((200_000, 2), torch.Generator().manual_seed(2), dtype=torch.float64)
    assert abs(float(prior[:, 0].var()) - 1) < 0.02 and abs(float(prior[:, 1].var()) - p.M) < 0.005
    with pytest.raises(ValueError, match="eps: CLD's noise has the state's shape"):
        p.q_sample(x0, t, eps[:, :3])


def test_hsm_is_minimised_by_the_exact_velocity_noise_and_weights_by_likelihood():
    """HSM's loss at the mixture's exact E[eps_v | u_t] plus delta x_t exceeds the loss at it by delta^2 E[x_t^2] (the
    cross term vanishes only at the conditional mean of the target); the likelihood weighting multiplies by
    2 Gamma beta ell_t^2."""
    p = CLDProcess()
    oracle = MIX.cld_denoiser(p).net.fn
    x0 = MIX.sample(40_000, torch.Generator().manual_seed(3))[0]

    def loss(delta, weighting="eps"):
        seen = []

        def fn(u, t):
            seen.append(u[:, :2].double().pow(2).mean())
            return oracle(u, t) + delta * u[:, :2]

        den = CLDDenoiser.from_function(fn, p, "eps")
        return HSMLoss(weighting)(den, x0, generator=torch.Generator().manual_seed(4)), float(seen[0])

    base, _ = loss(0.0)
    for delta in (0.1, -0.2):
        worse, x2 = loss(delta)
        assert abs(float((worse - base).mean()) - delta**2 * x2) < 0.1 * delta**2 * x2, delta
    lw, _ = loss(0.0, "likelihood")
    ratio = lw / base
    assert float(ratio.min()) > 2 * p.damping * p.beta * 0.99  # ell_t >= 1 on (0, 1]: L22 <= 1
    g = torch.Generator().manual_seed(4)
    t = p.t_eps + torch.rand(len(x0), generator=g, dtype=torch.float64) * (p.t_max - p.t_eps)
    torch.testing.assert_close(ratio, (2 * p.damping * p.beta * p.noise_scale(t) ** 2).float(), rtol=1e-5, atol=0)


def _draw(sampler, steps, n=4000, **options):
    p = CLDProcess()
    den = MIX.cld_denoiser(p)
    gens = sample_generators(0, n)
    stats = {}
    x = sample(den, p.prior_sample((n, 4), gens, dtype=torch.float64), sampler, steps, generator=gens, stats=stats,
               **options)
    return x, stats["nfe"]


@pytest.mark.parametrize("sampler,steps", [("sscs", 50), ("cld_em", 50), ("cld_ode", 2)])
def test_samplers_reproduce_the_mixture_with_its_exact_velocity_score(sampler, steps):
    """EM on the reverse SDE, SSCS and the probability-flow ODE (dopri5) with the exact velocity score of the mixture
    reproduce its weights and means; the ODE's network evaluations are counted."""
    x, nfe = _draw(sampler, steps)
    assert_reproduces_mixture(MIX, x, tv=0.04, label=sampler)
    assert nfe == steps if sampler != "cld_ode" else 20 < nfe < 400


def test_sscs_beats_euler_maruyama_at_equal_nfe():
    """The paper's claim (sec. 5.1): at 10 and 20 network evaluations SSCS's sliced Wasserstein distance to fresh draws
    is under half of Euler-Maruyama's (measured: 0.25 vs 1.10 at 10, 0.16 vs 0.35 at 20, with 4000 samples)."""
    ref = MIX.sample(4000, torch.Generator().manual_seed(1))[0]
    for steps in (10, 20):
        sw = {s: sliced_wasserstein(_draw(s, steps)[0], ref) for s in ("sscs", "cld_em")}
        assert sw["sscs"] < 0.5 * sw["cld_em"], (steps, sw)


def test_samplers_refuse_the_other_family_in_one_line():
    from denoisekit.processes import VPSDE
    from denoisekit.denoiser import Denoiser
    p = CLDProcess()
    den = MIX.cld_denoiser(p)
    u = p.prior_sample((4, 4))
    with pytest.raises(ValueError, match="sampler 'ddim': works on the scalar Gaussian .* use one of sscs, cld_em, "
                                         "cld_ode"):
        sample(den, u, "ddim", 5)
    with pytest.raises(ValueError, match="schedule: 'karras' is spaced in the noise level"):
        sample(den, u, "sscs", 5, "karras")
    vp = Denoiser.from_function(lambda x, t: torch.zeros_like(x), VPSDE())
    with pytest.raises(ValueError, match="sampler 'sscs': works on the critically-damped Langevin"):
        sample(vp, torch.randn(4, 2), "sscs", 5)
    with pytest.raises(ValueError, match="process: a CLD denoiser reads the state"):
        CLDDenoiser(torch.nn.Identity(), VPSDE())
    with pytest.raises(ValueError, match="damping: critical damping .* Gamma = 1 for mass_inv 4; got 2"):
        CLDProcess(damping=2.0)
    with pytest.raises(ValueError, match="prediction: expected one of eps, mixed"):
        CLDDenoiser(torch.nn.Identity(), p, "v")


from denoisekit.cli import main  # noqa: E402
from test_improved_ddpm import cli  # noqa: E402
from test_reliability import TINY, one_line_error  # noqa: E402


def test_training_and_sampling_cld_through_the_cli(tmp_path):
    """--objective hsm brings process cld and the mixed score; the network reads (x, v) and gives eps_v; the three CLD
    samplers run on it, sscs by default; same seed, same samples."""
    run = tmp_path / "cld"
    assert main(["train", "--data", "moons", "--out", str(run), "--steps", "20", "--objective", "hsm",
                 "--set", "loss.weighting=likelihood", *TINY]) == 0
    from denoisekit.models import load_model
    model = load_model(run)
    den = model.denoiser
    assert isinstance(den, CLDDenoiser) and den.prediction == "mixed" and model.shape == (2,)
    out = den(torch.randn(3, 4), torch.full((3,), 0.5))
    assert out.eps.shape == (3, 2) and out.x0.shape == (3, 2)
    for sampler in ("sscs", "cld_em", "cld_ode", None):
        outs = []
        for k in range(2):
            npz = tmp_path / f"{sampler}{k}.npz"
            flags = ["--sampler", sampler, "--steps", "5"] if sampler else []
            assert main(["sample", str(run), *flags, "--n", "8", "--seed", "3", "--npz", str(npz),
                         "--out", str(tmp_path / f"{sampler}{k}.png")]) == 0
            outs.append(npz.read_bytes())
        assert outs[0] == outs[1]
    gif = tmp_path / "reverse.gif"  # the frames are the states' data part
    assert main(["sample", str(run), "--steps", "5", "--n", "4", "--gif", str(gif), "--out",
                 str(tmp_path / "g.png")]) == 0 and gif.stat().st_size > 0


@pytest.mark.parametrize("extra,fragments", [
    (["--objective", "hsm", "--process", "vp"], ["objective: hybrid score matching", "process.kind cld", "VPSDE"]),
    (["--process", "cld"], ["objective: process cld is trained by hybrid score matching", "not simple"]),
    (["--prediction", "mixed"], ["prediction: the mixed score is CLD's"]),
    (["--objective", "hsm", "--prediction", "v"], ["prediction: expected one of eps, mixed"]),
    (["--objective", "hsm", "--set", "process.damping=2"], ["process.damping: critical damping", "Gamma = 1"]),
    (["--objective", "hsm", "--set", "process.gamma=0"], ["process.gamma: expected a positive number"]),
    (["--objective", "hsm", "--set", "loss.weighting=snr"], ["loss.weighting: expected one of 'eps', 'likelihood'"]),
    (["--objective", "hsm", "--set", "clip_x0=1"], ["clip_x0: not available with process cld"]),
    (["--objective", "hsm", "--set", "sample.sampler=ddim"], ["sampler 'ddim': works on the scalar Gaussian",
                                                              "sscs, cld_em, cld_ode"]),
])
def test_bad_cld_settings_are_one_line(extra, fragments, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(["train", "--data", "moons", "--out", str(run), "--steps", "3", *TINY, *extra]) == 2
    one_line_error(capsys, *fragments)
    assert not run.exists()


def test_a_scalar_sampler_asked_of_a_cld_run_is_one_line(tmp_path, capsys):
    run = tmp_path / "cld"
    assert main(["train", "--data", "moons", "--out", str(run), "--steps", "3", "--objective", "hsm", *TINY]) == 0
    assert cli(["sample", str(run), "--sampler", "dpmpp_2m", "--steps", "5", "--n", "4",
                "--out", str(tmp_path / "s.png")]) == 2
    one_line_error(capsys, "sampler 'dpmpp_2m': works on the scalar Gaussian", "use one of sscs, cld_em, cld_ode")
