"""Ancestral sampling against diffusers step for step, and against an analytic Gaussian mixture."""
import pytest
import torch

from denoisekit import Denoiser, DiscreteVP, ddpm_sample, ddpm_step, sampling_times
from denoisekit.utils import sample_generators
from gmm import OracleEpsNet


def _diffusers_scheduler(process, variance_type):
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.DDPMScheduler(num_train_timesteps=process.T, beta_schedule="linear", clip_sample=False,
                                    variance_type=variance_type, prediction_type="epsilon")
    # diffusers builds its tables in float32; give it ours in float64 so the comparison is of the algorithm
    assert torch.allclose(sched.betas.double(), process.betas, atol=1e-8)
    sched.betas = process.betas.clone()
    sched.alphas = 1 - sched.betas
    sched.alphas_cumprod = torch.cumprod(sched.alphas, 0)
    sched.one = torch.tensor(1.0, dtype=torch.float64)
    return sched


@pytest.mark.parametrize("variance,variance_type,steps,spacing", [
    ("beta_tilde", "fixed_small", 1000, "leading"),
    ("beta", "fixed_large", 1000, "leading"),
    ("beta_tilde", "fixed_small", 50, "leading"),
    ("beta", "fixed_large", 50, "leading"),
])
def test_matches_diffusers_ddpm_scheduler(gmm, variance, variance_type, steps, spacing):
    process = DiscreteVP("linear", 1000)
    denoiser = Denoiser(OracleEpsNet(gmm, process), process, "eps").double()
    sched = _diffusers_scheduler(process, variance_type)
    sched.set_timesteps(steps)
    times = sampling_times(process, steps, spacing)
    assert torch.equal(sched.timesteps.double(), times[:-1])
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x_ref = x.clone()
    for i, t in enumerate(sched.timesteps):
        with torch.no_grad():
            eps = denoiser(x_ref, t.double()).eps
        x_ref = sched.step(eps, t, x_ref, generator=torch.Generator().manual_seed(i)).prev_sample
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(i), dtype=torch.float64)
        with torch.no_grad():
            x, _ = ddpm_step(denoiser, x, times[i], times[i + 1], noise, variance=variance)
        assert torch.allclose(x, x_ref, atol=1e-5, rtol=0), f"step {i} (t={int(t)}) differs"


@pytest.mark.parametrize("steps", [1000, 250])
def test_oracle_mixture_is_reproduced(gmm, steps):
    """Sampling the exact denoiser of a Gaussian mixture gives back its weights, means and spreads."""
    process = DiscreteVP("linear", 1000)
    denoiser = Denoiser(OracleEpsNet(gmm, process), process, "eps")
    n = 3000
    x_T = process.prior_sample((n, 2), torch.Generator().manual_seed(0))
    x = ddpm_sample(denoiser, x_T, sampling_times(process, steps), generator=torch.Generator().manual_seed(1))
    k = ((x[:, None, :].double() - gmm.mu[None]) ** 2).sum(-1).argmin(1)
    weights = torch.bincount(k, minlength=3).double() / n
    assert torch.allclose(weights, gmm.w, atol=0.03), weights
    for j in range(3):
        assert torch.allclose(x[k == j].double().mean(0), gmm.mu[j], atol=0.02)
        assert float(x[k == j].double().std(0).mean()) == pytest.approx(float(gmm.tau[j].mean()), rel=0.15)


def test_untrained_model_does_not_reproduce_the_mixture(gmm):
    """The same check fails for a wrong model, so the test above can fail."""
    process = DiscreteVP("linear", 1000)
    wrong = Denoiser(OracleEpsNet(type(gmm)([0.5, 0.5], [[0.5, 0.5], [-0.5, 0.5]], [0.1, 0.1]), process), process)
    x = ddpm_sample(wrong, process.prior_sample((1000, 2), torch.Generator().manual_seed(0)),
                    sampling_times(process, 100), generator=torch.Generator().manual_seed(1))
    k = ((x[:, None, :].double() - gmm.mu[None]) ** 2).sum(-1).argmin(1)
    assert not torch.allclose(torch.bincount(k, minlength=3).double() / 1000, gmm.w, atol=0.03)


def test_same_seed_same_sample_whatever_the_batch(gmm):
    process = DiscreteVP("linear", 1000)
    denoiser = Denoiser(OracleEpsNet(gmm, process), process, "eps")
    times = sampling_times(process, 20)

    def run(n):
        gens = sample_generators(7, n)
        return ddpm_sample(denoiser, process.prior_sample((n, 2), gens), times, generator=gens)

    a, b = run(6), run(2)
    assert torch.equal(a[:2], b) and not torch.equal(a[0], a[1])
    assert torch.equal(run(6), a)  # and again: deterministic


def test_callback_and_bad_times(gmm):
    process = DiscreteVP("linear", 1000)
    denoiser = Denoiser(OracleEpsNet(gmm, process), process, "eps")
    seen = []
    ddpm_sample(denoiser, torch.randn(4, 2), sampling_times(process, 5),
                callback=lambda i, t, x, pred: seen.append((i, float(t), tuple(x.shape))))
    assert [s[0] for s in seen] == [0, 1, 2, 3, 4] and seen[0][1] == 999.0
    with pytest.raises(ValueError, match="descending"):
        ddpm_sample(denoiser, torch.randn(4, 2), torch.tensor([0.0, 10.0]))
    with pytest.raises(ValueError, match="variance"):
        ddpm_step(denoiser, torch.randn(4, 2), 10.0, 9.0, None, variance="large")


@pytest.mark.parametrize("spacing", ["uniform", "leading", "trailing", "quadratic"])
def test_step_schedules(spacing):
    process = DiscreteVP("linear", 1000)
    t = sampling_times(process, 10, spacing)
    assert len(t) == 11 and float(t[-1]) == -1.0 and bool((t[1:] < t[:-1]).all())
    if spacing == "trailing":
        assert float(t[0]) == 999.0  # trailing starts at the last step (Lin et al. 2023)
    if spacing == "leading":
        assert t[:-1].tolist() == [900.0, 800.0, 700.0, 600.0, 500.0, 400.0, 300.0, 200.0, 100.0, 0.0]
    with pytest.raises(ValueError, match="steps"):
        sampling_times(process, 0)


def test_quadratic_lifts_repeated_times():
    """DDIM's quadratic spacing rounds its dense low end onto repeated trained times at 50 steps of T = 1000: each
    repeat is lifted one step above the next, keeping the schedule elsewhere."""
    process = DiscreteVP("linear", 1000)
    t = sampling_times(process, 50, "quadratic")
    assert len(t) == 51 and bool((t[1:] < t[:-1]).all())
    raw = process.round_t(0.8 * 1000 * torch.linspace(0, 1, 50, dtype=torch.float64).flip(0) ** 2)
    assert t[:4].tolist() == [800.0, 768.0, 736.0, 705.0] and t[:40].tolist() == raw[:40].tolist()
    assert t[-6:-1].tolist() == [5.0, 3.0, 2.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="repeat a time"):
        sampling_times(process, 1001, "quadratic")


def test_every_default_schedule_ends_at_the_smallest_trained_level():
    """A sampler's default schedule converges to the exact answer as the steps grow: its last network time is the
    smallest trained one (diffusers' 'trailing' stops at t = T/steps - 1, and its final denoising step from there
    narrows narrow modes at any step count, so it may be named but is never a default). The consistency sampler is the
    exception that proves it: each of its evaluations maps to the data, and at t_eps its f is the identity, so its
    default ('trailing') spends every step above t_eps."""
    from denoisekit.samplers import DEFAULT_SCHEDULES, SAMPLERS
    process = DiscreteVP("linear", 1000)
    assert DEFAULT_SCHEDULES["consistency"] == "trailing"
    for name in set(SAMPLERS) - {"consistency"}:
        schedule = DEFAULT_SCHEDULES.get(name, "karras")
        assert float(sampling_times(process, 50, schedule)[-2]) == process.t_eps, (name, schedule)
    assert float(sampling_times(process, 50, "trailing")[-2]) == 19.0
