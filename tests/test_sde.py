"""Score SDEs (issue 12, first part): VP, sub-VP and VE processes against simulation of their forward SDEs and their
closed forms; one generic reverse SDE through process.sde(t); predictor-corrector and Euler-Maruyama samplers with
the exact score of a Gaussian mixture; eps- and score-models sampling alike."""
import math

import pytest
import torch

from denoisekit.analytic import GaussianMixture
from denoisekit.processes import SubVPSDE, VESDE, VPSDE
from denoisekit.denoiser import Denoiser
from denoisekit.processes import DiscreteVP, NoiseProcess
from denoisekit.samplers import reverse_drift, sample
from denoisekit.utils import sample_generators
from gmm import assert_reproduces_mixture

PROCESSES = {"vp": VPSDE(), "subvp": SubVPSDE(), "ve": VESDE(sigma_min=0.01, sigma_max=20.0)}


@pytest.mark.parametrize("name", list(PROCESSES))
def test_closed_form_drift_and_diffusion_are_the_linear_sde_of_the_marginals(name):
    """f = d log alpha / dt and g^2 = d sigma^2 / dt - 2 f sigma^2 (autograd) equal each SDE's own closed form."""
    p = PROCESSES[name]
    t = torch.linspace(0.001, 1, 50, dtype=torch.float64)
    f, g2 = p.sde(t)
    f_auto, g2_auto = NoiseProcess.sde(p, t)
    torch.testing.assert_close(f, f_auto, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g2, g2_auto, rtol=1e-9, atol=1e-12)
    lam = p.log_snr(t)
    torch.testing.assert_close(p.t_from_log_snr(lam), t, rtol=1e-9, atol=1e-12)
    assert float(p.sigma(torch.tensor(0.0))) == 0 and float(p.alpha(torch.tensor(0.0))) == 1


def test_the_papers_formulas():
    """Song et al. 2021, eq. 30-34: VP's beta(t), sub-VP's g^2 = beta (1 - e^{-2 B}), VE's geometric sigma."""
    t = torch.tensor([0.2, 0.7], dtype=torch.float64)
    vp, sub, ve = PROCESSES["vp"], PROCESSES["subvp"], PROCESSES["ve"]
    beta = 0.1 + t * 19.9
    B = 0.1 * t + 0.5 * 19.9 * t**2
    torch.testing.assert_close(vp.sde(t)[1], beta)
    torch.testing.assert_close(vp.alpha(t), torch.exp(-B / 2))
    torch.testing.assert_close(sub.sde(t)[1], beta * (1 - torch.exp(-2 * B)))
    torch.testing.assert_close(sub.sigma(t), 1 - torch.exp(-B))
    torch.testing.assert_close(ve.sigma(t), 0.01 * (2000 ** (2 * t) - 1).sqrt())
    torch.testing.assert_close(ve.sde(t)[1], 2 * math.log(2000) * 0.01**2 * 2000 ** (2 * t))


@pytest.mark.parametrize("name", list(PROCESSES) + ["ddpm"])
def test_marginals_match_a_simulation_of_the_forward_sde(name):
    """Euler-Maruyama on dx = f x dt + g dw from fixed x_0 (4000 fine steps): mean alpha x_0 and std sigma at t."""
    p = PROCESSES.get(name) or DiscreteVP("linear", 1000)
    t_end = 0.6 if name != "ddpm" else 600.0
    lo = 0.0 if name != "ddpm" else -1.0
    g = torch.Generator().manual_seed(0)
    x0 = torch.tensor([1.5, -0.5], dtype=torch.float64)
    n, steps = 20000, 4000
    x = x0.expand(n, 2).clone()
    ts = torch.linspace(lo, t_end, steps + 1, dtype=torch.float64)
    f, g2 = p.sde((ts[:-1] + ts[1:]) / 2)  # midpoint rule
    for i in range(steps):
        dt = float(ts[i + 1] - ts[i])
        x = x + float(f[i]) * x * dt + math.sqrt(float(g2[i]) * dt) * torch.randn(n, 2, generator=g, dtype=torch.float64)
    t = torch.tensor(t_end, dtype=torch.float64)
    a, s = float(p.alpha(t)), float(p.sigma(t))
    se = s / math.sqrt(n)
    assert (x.mean(0) - a * x0).abs().max() < 4 * se + 1e-3 * abs(a)
    assert (x.std(0) / s - 1).abs().max() < 0.02


GMM = GaussianMixture.random(dim=16, k=4, seed=0)


@pytest.mark.parametrize("name", list(PROCESSES))
@pytest.mark.parametrize("sampler,steps,options", [("pc", 100, {}), ("pc", 200, {"corrector": "none"}),
                                                   ("em", 300, {}), ("dpmpp_2m", 25, {})])
def test_reverse_samplers_with_the_exact_score_reproduce_the_mixture(name, sampler, steps, options):
    p = PROCESSES[name]
    n = 1500
    x_T = p.prior_sample((n, 16), sample_generators(0, n), dtype=torch.float64)
    x = sample(GMM.denoiser(p), x_T, sampler, steps, generator=sample_generators(1, n), **options)
    assert_reproduces_mixture(GMM, x, label=sampler)


def test_the_samplers_refuse_the_wrong_options():
    p = PROCESSES["vp"]
    den = GMM.denoiser(p)
    x_T = torch.zeros(2, 16, dtype=torch.float64)
    for options, msg in (({"snr": 0}, "^snr: expected a positive number"),
                         ({"corrector_steps": 0}, "^corrector_steps: expected a positive integer"),
                         ({"predictor": "heun"}, "^predictor: expected"),
                         ({"corrector": "none", "predictor": "none"}, "^predictor: with corrector 'none' too")):
        with pytest.raises(ValueError, match=msg):
            sample(den, x_T, "pc", 5, **options)


def test_eps_and_score_models_sample_alike():
    """s = -eps / sigma: the same model given as an eps-predictor and as a score function gives the same samples."""
    p = PROCESSES["vp"]
    exact = GMM.denoiser(p)

    def score(x, c):
        t = c.double()  # a plain function is given the process time
        return GMM.score(x, p.alpha(t)[:, None], p.sigma(t)[:, None]).to(x.dtype)
    score_model = Denoiser.from_function(score, p, "score")
    n = 64
    x_T = p.prior_sample((n, 16), sample_generators(0, n), dtype=torch.float64)
    for sampler in ("pc", "dpmpp_2m"):
        a = sample(exact, x_T, sampler, 20, generator=sample_generators(1, n))
        b = sample(score_model, x_T, sampler, 20, generator=sample_generators(1, n))
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_reverse_drift_is_the_probability_flow_and_the_reverse_sde():
    """At a point, f x - g^2 score (reverse SDE) and f x - g^2 score / 2 (probability flow): the latter equals
    d x / dt along the ODE, d/dt [alpha x~] with dx~/dt = (ds/dt) eps."""
    p = PROCESSES["subvp"]
    den = GMM.denoiser(p)
    x = torch.randn(8, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    t = torch.tensor(0.4, dtype=torch.float64)
    drift, pred = reverse_drift(p, den, x, t, probability_flow=True)
    with torch.enable_grad():
        tt = t.clone().requires_grad_(True)
        a, s = p.alpha(tt), p.sigma(tt)
        da, ds_over_a = (g.detach() for g in (torch.autograd.grad(a, tt, retain_graph=True)[0],
                                                torch.autograd.grad(s / a, tt)[0]))
        a = a.detach()
    # x = a x~, dx/dt = (da/dt) x~ + a d(s/a)/dt eps
    expected = float(da) * x / float(a) + float(a) * float(ds_over_a) * pred.eps
    torch.testing.assert_close(drift, expected, rtol=1e-8, atol=1e-10)
    sde_drift, _ = reverse_drift(p, den, x, t)
    f, g2 = p.sde(t)
    torch.testing.assert_close(sde_drift - drift, -0.5 * float(g2) * (-pred.eps / float(p.sigma(t))))


# --- through the run config and the CLI ---------------------------------------------------------------------

from denoisekit.cli import main  # noqa: E402
from test_improved_ddpm import cli  # noqa: E402
from test_reliability import TINY, one_line_error  # noqa: E402


@pytest.mark.parametrize("kind", ["vp", "subvp", "ve"])
def test_training_and_sampling_a_continuous_process_through_the_cli(kind, tmp_path, capsys):
    run = tmp_path / kind
    assert main(["train", "--data", "moons", "--out", str(run), "--steps", "30", "--process", kind, *TINY]) == 0
    from denoisekit.models import load_denoiser
    den, config = load_denoiser(run)
    assert type(den.process).__name__ == {"vp": "VPSDE", "subvp": "SubVPSDE", "ve": "VESDE"}[kind]
    for sampler in ("pc", "em", "dpmpp_2m"):
        assert main(["sample", str(run), "--sampler", sampler, "--steps", "8", "--n", "16",
                     "--out", str(tmp_path / f"{sampler}.png")]) == 0
    assert main(["sample", str(run), "--sampler", "pc", "--steps", "8", "--opt", "snr=0.1", "--opt",
                 "corrector_steps=2", "--out", str(tmp_path / "pc2.png")]) == 0


@pytest.mark.parametrize("extra,fragments", [
    (["--process", "xyz"], ["--process", "invalid choice"]),
    (["--set", "process.kind=xyz"], ["process.kind: expected one of ddpm, ncsn, vp, subvp, ve"]),
    (["--process", "vp", "--set", "process.T=100"], ["process", "'T'"]),
    (["--process", "vp", "--set", "process.beta_max=0.05"], ["process.beta_max"]),
    (["--process", "ve", "--set", "process.sigma_min=-1"], ["process.sigma_max"]),
    (["--process", "ve", "--set", "process.t_eps=0.5"], ["process.t_eps: expected a small positive time"]),
    (["--process", "vp", "--objective", "hybrid"], ["objective: hybrid sums the discrete variational bound"]),
])
def test_bad_process_settings_are_one_line(extra, fragments, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(["train", "--data", "moons", "--out", str(run), "--steps", "3", *TINY, *extra]) == 2
    one_line_error(capsys, *fragments)
    assert not run.exists()


def test_bad_pc_options_from_the_cli_are_one_line(tmp_path, capsys):
    run = tmp_path / "vp"
    assert main(["train", "--data", "moons", "--out", str(run), "--steps", "4", "--process", "vp", *TINY]) == 0
    capsys.readouterr()
    assert main(["sample", str(run), "--sampler", "pc", "--steps", "5", "--opt", "snr=-1",
                 "--out", str(tmp_path / "x.png")]) == 2
    one_line_error(capsys, "snr: expected a positive number")
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("opt,fragment", [("corrector_steps=0", "corrector_steps: expected a positive integer"),
                                          ("predictor=heun", "predictor: expected"),
                                          ("corrector=annealed", "corrector: expected")])
def test_more_bad_pc_options_from_the_cli_are_one_line(opt, fragment, tmp_path, capsys):
    run = tmp_path / "vp"
    assert main(["train", "--data", "moons", "--out", str(run), "--steps", "2", "--process", "vp", *TINY]) == 0
    capsys.readouterr()
    assert main(["sample", str(run), "--sampler", "pc", "--steps", "5", "--opt", opt,
                 "--out", str(tmp_path / "x.png")]) == 2
    one_line_error(capsys, fragment)
    assert not (tmp_path / "x.png").exists()


def test_train_classifier_refuses_a_continuous_process_in_one_line(tmp_path, capsys):
    run = tmp_path / "clf"
    assert cli(["train-classifier", "--data", "digits", "--out", str(run), "--steps", "2", "--process", "vp",
                "--set", "train.progress=false"]) == 2
    one_line_error(capsys, "process.kind: train-classifier supports the ddpm process only")
    assert not run.exists()
