"""The sampler family against the anchors (k-diffusion, diffusers), the analytic mixture and the theory."""
import math

import numpy as np
import pytest
import torch

from anchors import k_model, load_k_sampling
from denoisekit import Denoiser, DiscreteVP, generate, sample
from denoisekit.analytic import GaussianMixture
from denoisekit.samplers import SAMPLERS, ddim_interpolate, ddim_invert, rk45_sample, sampler_options
from denoisekit.samplers import SCHEDULES, sampling_times
from denoisekit.utils import sample_generators

PROCESS = DiscreteVP("linear", 1000)


def smooth_mixture():
    """A 3-D mixture with broad components: its ODE is smooth enough to show each solver's asymptotic order."""
    return GaussianMixture([0.3, 0.7], [[-0.5, 0.2, 0.1], [0.4, -0.3, 0.0]], [0.3, 0.25])


@pytest.fixture(scope="module")
def oracle():
    return smooth_mixture().denoiser(PROCESS).double()


def prior(n, d, seed=0):
    return PROCESS.prior_sample((n, d), torch.Generator().manual_seed(seed), dtype=torch.float64)


# --- parity with the anchors, float64, the same model outputs ---------------------------------------------------

def _k_run(oracle, theirs: str, **kw):
    """k-diffusion's sampler `theirs` on 12 Karras steps from 8 prior draws (in its x~ = x / alpha coordinates): the
    times, the prior draws and its samples; skipped where k-diffusion is not installed."""
    ks = load_k_sampling()
    if ks is None:
        pytest.skip("k-diffusion (with torchsde) is not installed")
    times = sampling_times(PROCESS, 12, "karras")
    x_T = prior(8, 3)
    ref = getattr(ks, theirs)(k_model(oracle), x_T / PROCESS.alpha(times[0]), PROCESS.noise_level(times),
                              disable=True, **kw)
    return times, x_T, ref


@pytest.mark.parametrize("ours,theirs,kw", [
    ("euler", "sample_euler", {}), ("heun", "sample_heun", {}), ("dpmpp_2m", "sample_dpmpp_2m", {}),
    ("dpmpp_2s", "sample_dpmpp_2s_ancestral", {"eta": 0.0}), ("ddim", "sample_euler_ancestral", {"eta": 0.0})])
def test_matches_k_diffusion(oracle, ours, theirs, kw):
    times, x_T, ref = _k_run(oracle, theirs, **kw)
    assert torch.allclose(sample(oracle, x_T, ours, times=times), ref, atol=1e-10, rtol=0)


@pytest.mark.parametrize("ours,theirs,kw", [
    ("dpmpp_2m_sde", "sample_dpmpp_2m_sde", {"eta": 1.0}), ("dpmpp_2m_sde", "sample_dpmpp_2m_sde", {"eta": 0.5}),
    ("ddim", "sample_euler_ancestral", {"eta": 1.0}), ("ddim", "sample_euler_ancestral", {"eta": 0.6})])
def test_stochastic_samplers_match_k_diffusion_on_the_same_noise(oracle, ours, theirs, kw):
    """k-diffusion's stochastic samplers replaying our noise through their noise_sampler hook (one standard normal draw
    per step, in the same order, from a generator seeded as ours): the same samples, so the noise's scale and its
    place in each step are theirs, not only the deterministic part."""
    replay = torch.Generator().manual_seed(5)
    noise = lambda sigma, sigma_next: torch.randn((8, 3), generator=replay, dtype=torch.float64)  # noqa: E731
    times, x_T, ref = _k_run(oracle, theirs, noise_sampler=noise, **kw)
    ours_x = sample(oracle, x_T, ours, times=times, generator=torch.Generator().manual_seed(5), **kw)
    assert torch.allclose(ours_x, ref, atol=1e-10, rtol=0)


def _diffusers_run(scheduler, oracle, x_T, steps):
    """diffusers' loop with our float64 alpha-bar, so the comparison is of the algorithm, not of float32 tables."""
    scheduler.alphas_cumprod = PROCESS.alpha_bar.clone()
    scheduler.set_timesteps(steps)
    if hasattr(scheduler, "sigmas") and scheduler.sigmas is not None:
        full = ((1 - PROCESS.alpha_bar) / PROCESS.alpha_bar).sqrt().numpy()
        s = np.interp(scheduler.timesteps.numpy(), np.arange(len(full)), full)
        scheduler.sigmas = torch.from_numpy(np.concatenate([s, scheduler.sigmas[-1:].double().numpy()]))
    x = x_T.clone()
    for t in scheduler.timesteps:
        x = scheduler.step(oracle(x, t.double()).eps, t, x).prev_sample
    return x


@pytest.mark.parametrize("cls,ours,kw,options", [
    ("UniPCMultistepScheduler", "unipc", {"solver_order": 2}, {"order": 2}),
    ("UniPCMultistepScheduler", "unipc", {"solver_order": 3}, {"order": 3}),
    ("DPMSolverMultistepScheduler", "dpmpp_2m", {"solver_order": 2}, {}),
    ("DEISMultistepScheduler", "deis", {"solver_order": 3}, {"order": 3}),
])
def test_matches_diffusers_multistep(oracle, cls, ours, kw, options):
    diffusers = pytest.importorskip("diffusers")
    sched = getattr(diffusers, cls)(num_train_timesteps=1000, beta_schedule="linear", **kw)
    x_T = prior(8, 3)
    with torch.no_grad():
        ref = _diffusers_run(sched, oracle, x_T, 16)
    # diffusers' DEIS stops at t = 0 (a non-zero final sigma); the others step to the data
    end = 0.0 if ours == "deis" else -1.0
    times = torch.cat([sched.timesteps.double(), torch.tensor([end], dtype=torch.float64)])
    assert torch.allclose(sample(oracle, x_T, ours, times=times, **options), ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("steps", [10, 50])
def test_ddim_matches_diffusers_step_for_step(oracle, spacing, steps):
    """Each DDIM step from t to diffusers' prev_timestep equals theirs (1e-6); for leading and trailing the whole
    run does. diffusers' 'linspace' DDIM steps to t - T/steps, which is not the next time in its own list (the
    off-by-one that our explicit time lists rule out), so that spacing is compared step for step only."""
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False,
                                    timestep_spacing=spacing, set_alpha_to_one=True)
    sched.alphas_cumprod = PROCESS.alpha_bar.clone()
    sched.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)
    sched.set_timesteps(steps)
    x = prior(8, 3)
    x_ref = x.clone()
    for t in sched.timesteps:
        prev = float(t) - 1000 // steps
        with torch.no_grad():
            x_ref_next = sched.step(oracle(x_ref, t.double()).eps, t, x_ref).prev_sample
        step = sample(oracle, x_ref, "ddim", times=torch.tensor([float(t), max(prev, -1.0)], dtype=torch.float64))
        assert torch.allclose(step, x_ref_next, atol=1e-6, rtol=0)
        x_ref = x_ref_next
    if spacing != "linspace":
        ours = sample(oracle, prior(8, 3), "ddim", steps, spacing)
        assert torch.allclose(ours, x_ref, atol=1e-6, rtol=0)
        assert torch.equal(sampling_times(PROCESS, steps, spacing)[:-1], sched.timesteps.double())


# --- DDIM: eta = 1 is DDPM, inversion reconstructs ----------------------------------------------------------------

def test_ddim_eta_one_is_ddpm_beta_tilde_and_sigma_hat_is_ddpm_beta(oracle):
    """Sample for sample with the same noise (so also in distribution): DDIM(eta=1) = DDPM(beta-tilde) and
    DDIM(sigma-hat) = DDPM(beta), on a 20-step sub-sequence."""
    x_T = prior(64, 3)
    for eta, variance in ((1.0, "beta_tilde"), ("sigma_hat", "beta")):
        a = sample(oracle, x_T, "ddim", 20, "uniform", eta=eta, generator=sample_generators(5, 64))
        b = sample(oracle, x_T, "ddpm", 20, "uniform", variance=variance, generator=sample_generators(5, 64))
        assert torch.allclose(a, b, atol=1e-10, rtol=0)
    c = sample(oracle, x_T, "ddim", 20, "uniform", eta=0.5, generator=sample_generators(5, 64))
    assert not torch.allclose(a, c, atol=1e-3)


def test_ddim_inversion_reconstructs():
    """Encode data with 100 steps, decode with the same times: back to the input within 1e-3 (relative)."""
    gmm = GaussianMixture.random(8, 4, seed=3)
    oracle = gmm.denoiser(PROCESS).double()
    x0 = gmm.sample(32, torch.Generator().manual_seed(1))[0]
    times = sampling_times(PROCESS, 100, "uniform")
    z = ddim_invert(oracle, x0, times.flip(0))
    assert float(z.std()) == pytest.approx(1.0, abs=0.15)  # the encoding is noise-like
    x = sample(oracle, z, "ddim", times=times)
    err = float((x - x0).norm() / x0.norm())
    assert err < 1e-3
    # one fixed-point iteration (about the usual explicit inversion) reconstructs worse: the test can fail
    x1 = sample(oracle, ddim_invert(oracle, x0, times.flip(0), iters=1), "ddim", times=times)
    assert float((x1 - x0).norm() / x0.norm()) > 3 * err


def test_interpolation_endpoints_are_the_reconstructions():
    gmm = GaussianMixture.random(8, 4, seed=3)
    oracle = gmm.denoiser(PROCESS).double()
    x0 = gmm.sample(2, torch.Generator().manual_seed(2))[0]
    frames = ddim_interpolate(oracle, x0[:1], x0[1:], sampling_times(PROCESS, 100, "uniform"), frames=5, iters=5)
    assert frames.shape == (5, 1, 8)
    assert torch.allclose(frames[0, 0], x0[0], atol=1e-3) and torch.allclose(frames[-1, 0], x0[1], atol=1e-3)
    assert float((frames[2, 0] - x0[0]).norm()) > 0.05 and float((frames[2, 0] - x0[1]).norm()) > 0.05


# --- convergence at the theoretical order --------------------------------------------------------------------------

@pytest.mark.parametrize("name,order", [("euler", 1), ("heun", 2), ("dpmpp_2m", 2), ("dpmpp_2s", 2),
                                        ("dpmpp_3m", 3), ("deis", 3), ("unipc", 4)])
def test_convergence_order(oracle, name, order):
    """Error against a 1e-11 dopri5 solution falls as steps^-order (32 -> 64 -> 128 steps, uniform in log-SNR).
    UniPC-3 with its corrector is order 4 (Zhao et al. 2023, Thm 3.3)."""
    x_T = prior(32, 3)
    ref = rk45_sample(oracle, x_T, sampling_times(PROCESS, 2), rtol=1e-11, atol=1e-11)
    errs = [float((sample(oracle, x_T, name, n, "logsnr") - ref).pow(2).mean().sqrt()) for n in (32, 64, 128)]
    slopes = [math.log2(a / b) for a, b in zip(errs, errs[1:])]
    assert all(order - 0.35 < s < order + 0.35 for s in slopes), (errs, slopes)


def test_reference_3m_is_second_order(oracle):
    """k-diffusion's DPM-Solver++(3M) (the reference code's d2 without the factor 2) converges at order 2; ours at 3."""
    ks = load_k_sampling()
    if ks is None:
        pytest.skip("k-diffusion (with torchsde) is not installed")
    x_T = prior(32, 3)
    ref = rk45_sample(oracle, x_T, sampling_times(PROCESS, 2), rtol=1e-11, atol=1e-11)
    errs = []
    for n in (64, 128):
        times = sampling_times(PROCESS, n, "logsnr")
        x = ks.sample_dpmpp_3m_sde(k_model(oracle), x_T / PROCESS.alpha(times[0]), PROCESS.noise_level(times),
                                   eta=0.0, disable=True)
        errs.append(float((x - ref).pow(2).mean().sqrt()))
    assert 1.7 < math.log2(errs[0] / errs[1]) < 2.3


# --- every sampler reproduces the mixture ---------------------------------------------------------------------------

# Plain Langevin at the smallest noise level is not meant to: from the prior it mixes far too slowly between modes
# (Song & Ermon 2019, sec. 3.2); test_score_matching checks it against its own stationary law instead. Consistency
# sampling needs a consistency function (the ODE's flow map), which the posterior mean is not: test_distillation
# checks it with the mixture's exact flow map.
# (ddgan needs a generator that reads a latent z, recovery an energy model: tests/test_ddgan.py and
# tests/test_recovery.py check them against the exact mixture.)
SCALAR = [s for s, fn in SAMPLERS.items() if issubclass(DiscreteVP, fn.family)]  # CLD's samplers: tests/test_cld.py


@pytest.mark.parametrize("name", [s for s in SCALAR if s not in ("langevin", "consistency", "ddgan", "recovery")])
def test_every_sampler_reproduces_the_mixture_weights(gmm, name):
    """At generous NFE each sampler's samples fall into the components in the mixture's proportions (within
    4 binomial standard errors) with the components' means, from a plain-function model (Denoiser.from_function)."""
    oracle = gmm.denoiser(PROCESS)
    n = 2000
    gens = sample_generators(0, n)
    x_T = PROCESS.prior_sample((n, 2), gens)
    steps = {"ddpm": 250, "euler_maruyama": 250, "dpmpp_2m_sde": 100, "euler": 100, "ddim": 100}.get(name, 50)
    x = sample(oracle, x_T, name, steps, generator=gens).double()
    k = ((x[:, None, :] - gmm.mu[None]) ** 2).sum(-1).argmin(1)
    weights = torch.bincount(k, minlength=3).double() / n
    se = (gmm.w * (1 - gmm.w) / n).sqrt()
    assert bool(((weights - gmm.w).abs() < 4 * se + 0.005).all()), weights
    for j in range(3):
        assert torch.allclose(x[k == j].mean(0), gmm.mu[j], atol=0.03)


def _component_spread(x: torch.Tensor, gmm) -> tuple[torch.Tensor, torch.Tensor]:
    """Per component: the RMS distance of its samples from the true mean over the true std, and one standard error
    of that ratio (a chi distribution with 2 n_k degrees of freedom: 1 / sqrt(4 n_k))."""
    k = ((x[:, None, :] - gmm.mu[None]) ** 2).sum(-1).argmin(1)
    ratio = torch.stack([((x[k == j] - gmm.mu[j]) ** 2).mean().sqrt() / gmm.tau[j, 0] for j in range(len(gmm.w))])
    se = torch.stack([1 / torch.tensor(4.0 * int((k == j).sum())).sqrt() for j in range(len(gmm.w))])
    return ratio, se.double()


# (sampler, steps, options): NFE at which each one's own discretisation error in the spread is within ~2%
SPREAD_CASES = {"euler_maruyama": ("euler_maruyama", 250, {}), "pc": ("pc", 300, {}), "em": ("em", 300, {}),
                "dpmpp_2m_sde": ("dpmpp_2m_sde", 100, {}), "heun_churn": ("heun", 50, {"s_churn": 20.0})}


@pytest.mark.parametrize("case", list(SPREAD_CASES))
def test_stochastic_samplers_reproduce_each_components_spread(gmm, case):
    """Each component's standard deviation within 4 standard errors (+2%) of the truth: a sampler whose noise is off
    by 10% moves the spread by several standard errors (weights and means alone let a noise scale of 0.8 pass)."""
    sampler, steps, options = SPREAD_CASES[case]
    n = 2000
    gens = sample_generators(0, n)
    x = sample(gmm.denoiser(PROCESS), PROCESS.prior_sample((n, 2), gens), sampler, steps, generator=gens,
               **options).double()
    ratio, se = _component_spread(x, gmm)
    assert bool(((ratio - 1).abs() < 4 * se + 0.02).all()), (ratio, se)


def _gaussian_law(sampler: str, times: torch.Tensor, mu: float, tau: float, eta: float = 0.0) -> tuple[list, list]:
    """The exact law of a stochastic sampler's output on data N(mu, tau^2) with the exact denoiser, from prior N(0, 1):
    each step is x' = A x + B + s z, so mean and variance follow m' = A m + B, v' = A^2 v + s^2. Written here from the
    papers, not from the samplers: x0_hat = mu + k (x - a mu), k = a tau^2 / (a^2 tau^2 + sigma^2) (Tweedie);
    DDIM: x' = a' x0_hat + sqrt(sigma'^2 - s^2) eps_hat + s z, s = eta sqrt((1 - ab') / (1 - ab)) sqrt(1 - ab / ab')
    (Song et al. 2021, eq. 12, 16); DDPM: x' = the posterior mean (Ho et al. 2020, eq. 7) + s z, s^2 = beta-tilde or
    beta = 1 - ab / ab', no noise on the step to the data (Alg. 2)."""
    a, sig = PROCESS.alpha(times).tolist(), PROCESS.sigma(times).tolist()
    m, v = 0.0, 1.0
    for i in range(len(times) - 1):
        k = a[i] * tau**2 / (a[i] ** 2 * tau**2 + sig[i] ** 2)  # x0_hat = k x + (1 - k a) mu
        ab, ab_next, last = a[i] ** 2, a[i + 1] ** 2, i == len(times) - 2
        if sampler == "ddim":
            s = 0.0 if last else eta * math.sqrt((1 - ab_next) / (1 - ab) * (1 - ab / ab_next))
            d = math.sqrt(max(sig[i + 1] ** 2 - s**2, 0.0)) / sig[i]  # eps_hat = (x - a x0_hat) / sigma
            A, B = a[i + 1] * k + d * (1 - a[i] * k), (a[i + 1] - d * a[i]) * (1 - k * a[i]) * mu
        else:
            beta = 1 - ab / ab_next
            c0, ct = math.sqrt(ab_next) * beta / (1 - ab), math.sqrt(ab / ab_next) * (1 - ab_next) / (1 - ab)
            s = 0.0 if last else math.sqrt(beta * ((1 - ab_next) / (1 - ab) if sampler == "ddpm_beta_tilde" else 1))
            A, B = ct + c0 * k, c0 * (1 - k * a[i]) * mu
        m, v = A * m + B, A**2 * v + s**2
    return m, v


@pytest.mark.parametrize("sampler,options", [("ddim", {"eta": 0.5}), ("ddim", {"eta": 1.0}),
                                             ("ddpm_beta_tilde", {"variance": "beta_tilde"}),
                                             ("ddpm_beta", {"variance": "beta"})])
def test_ancestral_samplers_follow_their_exact_gaussian_law(sampler, options):
    """On Gaussian data with the exact denoiser a DDIM (eta > 0) or DDPM run is a linear Gaussian recursion whose
    output mean and variance are known exactly at any step count (here 20 coarse steps, where the spread is far from
    the data's): the samples' mean and variance within 4 standard errors of it. A noise scale off by 5% fails."""
    n, mu, tau = 20000, 0.5, 0.3
    times = sampling_times(PROCESS, 20, "uniform")
    one = GaussianMixture([1.0], [[mu, mu]], [tau])
    gens = sample_generators(0, n)
    x_T = PROCESS.prior_sample((n, 2), gens, dtype=torch.float64)
    x = sample(one.denoiser(PROCESS).double(), x_T, sampler.split("_")[0], times=times, generator=gens, **options)
    m, v = _gaussian_law(sampler, times, mu, tau, options.get("eta", 0.0))
    assert bool(((x.mean(0) - m).abs() < 4 * math.sqrt(v / n)).all()), (x.mean(0), m)
    assert bool(((x.var(0) - v).abs() < 4 * v * math.sqrt(2 / n)).all()), (x.var(0), v)


def test_stochastic_samplers_same_seed_same_samples_whatever_the_batch(gmm):
    oracle = gmm.denoiser(PROCESS)
    for name in ("ddim", "dpmpp_2m_sde", "euler_maruyama", "heun"):
        opts = {"eta": 0.7} if name == "ddim" else {"s_churn": 10.0} if name == "heun" else {}

        def run(n):
            gens = sample_generators(9, n)
            return sample(oracle, PROCESS.prior_sample((n, 2), gens), name, 10, generator=gens, **opts)
        a, b = run(5), run(2)
        assert torch.allclose(a[:2], b, atol=1e-6) and not torch.allclose(a[0], a[1])


def test_churn_changes_heun_and_stays_accurate(oracle):
    x_T = prior(256, 3)
    plain = sample(oracle, x_T, "heun", 30)
    churned = sample(oracle, x_T, "heun", 30, s_churn=20.0, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(plain, churned, atol=1e-3)
    assert float((plain.mean(0) - churned.mean(0)).abs().max()) < 0.1


def test_rk45_reports_its_evaluations(oracle):
    stats = {}
    rk45_sample(oracle, prior(4, 3), sampling_times(PROCESS, 10), rtol=1e-6, atol=1e-6, stats=stats)
    loose = {}
    rk45_sample(oracle, prior(4, 3), sampling_times(PROCESS, 10), rtol=1e-2, atol=1e-2, stats=loose)
    assert stats["nfe"] > loose["nfe"] > 6


# --- schedules ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("schedule", [s for s in SCHEDULES if s != "auto"])
def test_schedules_end_on_the_data(schedule):
    t = sampling_times(PROCESS, 10, schedule)
    assert len(t) == 11 and float(t[-1]) == PROCESS.t_min and bool((t[1:] < t[:-1]).all())
    assert float(t[:-1].min()) >= PROCESS.t_eps and float(t[0]) <= PROCESS.t_max


def test_karras_and_logsnr_are_what_they_say():
    t = sampling_times(PROCESS, 8, "karras", rho=7.0)[:-1]
    s = PROCESS.noise_level(t)
    ramp = s ** (1 / 7)
    assert torch.allclose(ramp[1:] - ramp[:-1], (ramp[1] - ramp[0]).expand(7), rtol=1e-6)
    assert float(t[0]) == pytest.approx(PROCESS.t_max) and float(t[-1]) == pytest.approx(PROCESS.t_eps, abs=1e-9)
    lam = PROCESS.log_snr(sampling_times(PROCESS, 8, "logsnr")[:-1])
    assert torch.allclose(lam[1:] - lam[:-1], (lam[1] - lam[0]).expand(7), rtol=1e-6)


# --- bad input: one-line errors -------------------------------------------------------------------------------------

def test_bad_sampler_input_is_a_one_line_error(oracle):
    x_T = prior(2, 3)
    cases = [
        (dict(sampler="ddim", steps=5, churn=3), r"sampler 'ddim': unknown option 'churn'; it takes eta"),
        (dict(sampler="euler", steps=5, eta=0.5), r"sampler 'euler': unknown option 'eta'; it takes s_churn"),
        (dict(sampler="nope", steps=5), r"sampler: expected one of ddpm, ddim"),
        (dict(sampler="ddim", steps=5, schedule="nope"), r"schedule: expected one of uniform"),
        (dict(sampler="ddim", steps=0), r"steps: expected a positive integer"),
        (dict(sampler="ddim", steps=2.5), r"steps: expected a positive integer"),
        (dict(sampler="ddim", steps=5, eta=2.0), r"eta: expected a number in \[0, 1\] or 'sigma_hat'"),
        (dict(sampler="unipc", steps=5, order=7), r"order: expected 1, 2, 3 or 4"),
        (dict(sampler="heun", steps=5, s_churn=-1.0), r"s_churn: expected a non-negative number"),
        (dict(sampler="rk45", steps=5, rtol=0), r"rtol: expected a positive number"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message) as info:
            sample(oracle, x_T, **kwargs)
        assert "\n" not in str(info.value)


def test_every_sampler_lists_its_options():
    assert sampler_options("ddim") == {"eta": 0.0}
    assert set(sampler_options("heun")) == {"s_churn", "s_tmin", "s_tmax", "s_noise"}
    assert sampler_options("dpmpp_2m") == {}


@pytest.mark.parametrize("prediction", ["edm", "v", "eps"])
def test_every_sampler_runs_a_network_of_every_prediction_type(prediction):
    """A real (untrained) network gets a per-sample noise input of shape (B,) from every sampler, on and off the
    grid (the precomputed coefficients are broadcast-shaped; EDM's c_noise must still be one per sample)."""
    from denoisekit import MLP, Denoiser
    seen = []

    class Probe(MLP):
        def forward(self, x, c_noise, cond=None):
            seen.append(tuple(c_noise.shape))
            return super().forward(x, c_noise, cond)

    torch.manual_seed(0)
    net = Probe(dim=2, time_embedding="fourier" if prediction == "edm" else "sinusoidal", latent_dim=3)
    model = Denoiser(net, PROCESS, prediction)  # with a latent z, so sampler ddgan runs it too
    x_T = PROCESS.prior_sample((3, 2), torch.Generator().manual_seed(0))
    for name in (s for s in SCALAR if s != "recovery"):  # an energy model's sampler: tests/test_recovery.py
        opts = {"s_churn": 5.0} if name == "heun" else {}
        if name != "ddgan":  # the other samplers pass no latent: give them a fixed one
            opts["cond"] = {"latent": torch.zeros(3, 3)}
        x = sample(model, x_T, name, 4, generator=torch.Generator().manual_seed(1), **opts)
        assert x.shape == (3, 2) and bool(x.isfinite().all()), name
    assert set(seen) == {(3,)}


# --- CUDA graphs (samplers/graphs.py): the replay plumbing, checked on the CPU with the graph's test double -----------

def _labelled_denoiser():
    from denoisekit.nets import MLP
    torch.manual_seed(0)
    return Denoiser(MLP(hidden=16, num_classes=3), DiscreteVP(T=100), "eps").eval()


def test_cuda_graphs_replay_gives_the_eager_samples():
    """Replayed through static inputs (eager_capture shares a graph's aliasing: one output storage per shape), DDIM
    and guided DDPM draw bitwise the eager samples; one recording per input shape (CFG's doubled batch is another);
    the network is restored afterwards. Fails if an input is not copied in or the output not cloned out."""
    from denoisekit.guidance import ClassifierFreeGuidance
    from denoisekit.samplers.graphs import GraphedNet, cuda_graphs, eager_capture
    d = _labelled_denoiser()
    labels = torch.tensor([0, 1, 2, 1])
    with torch.no_grad():  # the third run replays the first's recording with other labels
        want = [generate(d, 4, (2,), seed=1, steps=6, sampler="ddim", labels=labels),
                generate(ClassifierFreeGuidance(d, 2.0), 4, (2,), seed=1, steps=6, sampler="ddpm", labels=labels),
                generate(d, 4, (2,), seed=1, steps=6, sampler="ddim", labels=labels.flip(0))]
        net = d.net
        with cuda_graphs(d, capture=eager_capture):
            assert isinstance(d.net, GraphedNet) and d.net.embed is net.embed  # attributes read through
            got = [generate(d, 4, (2,), seed=1, steps=6, sampler="ddim", labels=labels),
                   generate(ClassifierFreeGuidance(d, 2.0), 4, (2,), seed=1, steps=6, sampler="ddpm", labels=labels),
                   generate(d, 4, (2,), seed=1, steps=6, sampler="ddim", labels=labels.flip(0))]
            recorded = len(d.net.graphs)
            x, c = torch.randn(4, 2), torch.full((4,), 10.0)
            first = d.net(x, c)
            second = d.net(x + 1, c)
            assert torch.equal(first, net(x, c)) and torch.equal(second, net(x + 1, c))  # not overwritten
    assert d.net is net
    assert recorded == 2  # (4, 2) and CFG's (8, 2)
    for w, g in zip(want, got):
        assert torch.equal(w, g)


def test_cuda_graphs_run_eagerly_with_gradients_and_restore_the_net_on_errors():
    from denoisekit.samplers.graphs import cuda_graphs, eager_capture
    d = _labelled_denoiser()
    net = d.net
    with pytest.raises(RuntimeError, match="boom"), cuda_graphs(d, capture=eager_capture):
        x = torch.randn(3, 2, requires_grad=True)
        d.net(x, torch.ones(3)).sum().backward()  # gradients on: eager, nothing recorded
        assert x.grad is not None and not d.net.graphs
        raise RuntimeError("boom")
    assert d.net is net
