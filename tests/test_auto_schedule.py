"""The automatic schedule: fitted to the model alone, better than fixed schedules on fresh noise, cached."""
import json
import time

import pytest
import torch

from denoisekit import DiscreteVP, GaussianMixture, sample
from denoisekit.samplers import rk45_sample
from denoisekit.samplers.auto import HELD_OUT, auto_schedule, cycled, warp_levels
from denoisekit.samplers import sampling_times

PROCESS = DiscreteVP("linear", 1000)


def test_warp_is_monotone_and_flat_is_logsnr():
    import numpy as np
    flat = warp_levels(np.zeros(4), 6, 0.01, 100.0)
    assert np.allclose(np.diff(np.log(flat)), np.log(0.01 / 100.0) / 5)
    bent = warp_levels(np.array([2.0, -1.0, 0.5, 3.0]), 9, 0.01, 100.0)
    assert bent[0] == pytest.approx(100.0) and bent[-1] == pytest.approx(0.01) and (np.diff(bent) < 0).all()


def test_auto_beats_fixed_schedules_on_fresh_noise(tmp_path):
    """A mixture the method was not developed on; the error is measured on noise the pilots never saw, against a
    1e-10 solution the fit never sees."""
    gmm = GaussianMixture.random(8, 5, seed=11)
    oracle = gmm.denoiser(PROCESS).double()
    x_T = PROCESS.prior_sample((128, 8), torch.Generator().manual_seed(99), dtype=torch.float64)
    ref = rk45_sample(oracle, x_T, sampling_times(PROCESS, 2), rtol=1e-10, atol=1e-10)
    cache = tmp_path / "auto.json"
    t0 = time.perf_counter()
    times = auto_schedule(oracle, "unipc", 10, (8,), pilots=16, max_evals=160, cache_file=str(cache))
    fit_seconds = time.perf_counter() - t0
    err = lambda t: float((sample(oracle, x_T, "unipc", times=t) - ref).pow(2).mean().sqrt())
    auto = err(times)
    fixed = {s: err(sampling_times(PROCESS, 10, s)) for s in ("uniform", "logsnr", "karras")}
    assert auto < 0.8 * min(fixed.values()), (auto, fixed)
    assert len(times) == 11 and float(times[-1]) == PROCESS.t_min and float(times[-2]) == PROCESS.t_eps
    # cached: in memory for this model, and in the JSON file for a new process
    t0 = time.perf_counter()
    assert torch.equal(auto_schedule(oracle, "unipc", 10, (8,), pilots=16, max_evals=160), times)
    assert time.perf_counter() - t0 < fit_seconds / 5
    stored = json.loads(cache.read_text())
    assert len(stored) == 1 and list(stored.values())[0] == times.tolist()
    again = gmm.denoiser(PROCESS).double()  # another object: only the file knows it
    assert torch.equal(auto_schedule(again, "unipc", 10, (8,), pilots=16, max_evals=160, cache_file=str(cache)),
                       times)


def test_auto_through_sample_and_its_errors():
    gmm = GaussianMixture.random(4, 3, seed=2)
    oracle = gmm.denoiser(PROCESS).double()
    x_T = PROCESS.prior_sample((4, 4), torch.Generator().manual_seed(0), dtype=torch.float64)
    x = sample(oracle, x_T, "dpmpp_2m", 6, "auto")
    assert torch.isfinite(x).all()
    for sampler, opts in (("ddpm", {}), ("ddim", {"eta": 0.5}), ("heun", {"s_churn": 5.0}), ("rk45", {})):
        with pytest.raises(ValueError, match="schedule 'auto': fits deterministic ODE solvers"):
            sample(oracle, x_T, sampler, 6, "auto", **opts)


@pytest.mark.parametrize("sampler, steps", [("deis", 20), ("ipndm", 20)])
def test_auto_is_never_worse_on_its_held_out_pilots_than_a_fixed_schedule(sampler, steps):
    """The fit and the fixed schedules are weighed on a second, held-out set of pilot trajectories (the next draws of
    the pilots' generator) and the best of all is kept: with a short search, where the warp alone loses to a fixed
    schedule, 'auto' is that schedule."""
    gmm = GaussianMixture.random(16, 8, seed=0)
    oracle = gmm.denoiser(PROCESS).double()
    pilots = 16
    times = auto_schedule(oracle, sampler, steps, (16,), pilots=pilots, max_evals=12)
    g = torch.Generator().manual_seed(0)
    PROCESS.prior_sample((pilots, 16), g, dtype=torch.float64)  # the fit's pilots
    x_T = PROCESS.prior_sample((HELD_OUT * pilots, 16), g, dtype=torch.float64)  # the held-out ones
    ref = rk45_sample(oracle, x_T, sampling_times(PROCESS, 2), rtol=1e-6, atol=1e-6)
    err = lambda t: float((sample(oracle, x_T, sampler, times=t, generator=torch.Generator().manual_seed(0))
                           - ref).pow(2).mean().sqrt())
    fixed = {s: err(sampling_times(PROCESS, steps, s)) for s in ("uniform", "leading", "trailing", "quadratic",
                                                                  "logsnr", "karras")}
    assert err(times) <= min(fixed.values()) * (1 + 1e-9), (err(times), fixed)


def test_auto_with_a_conditioning_batch_smaller_than_the_pilots():
    """A class-conditional model: the pilots take the batch's labels in turn, however few there are."""
    gmm = GaussianMixture.random(8, 4, seed=2)
    oracle = gmm.denoiser(PROCESS, conditional=True).double()
    x_T = PROCESS.prior_sample((3, 8), torch.Generator().manual_seed(0), dtype=torch.float64)
    labels = torch.tensor([0, 2, 3])
    times = auto_schedule(oracle, "dpmpp_2m", 6, (8,), cond=labels, pilots=8, max_evals=8)
    assert torch.isfinite(sample(oracle, x_T, "dpmpp_2m", times=times, cond=labels)).all()
    assert cycled(labels, 7).label.tolist() == [0, 2, 3, 0, 2, 3, 0] and cycled(None, 7) is None
