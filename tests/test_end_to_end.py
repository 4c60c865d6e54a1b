"""Train the MLP on a 2-D toy for well under a minute and check the samples land on the data."""
import time

import torch

from denoisekit import Denoiser, DiscreteVP, SimpleLoss, TrainConfig, Trainer, generate, make_toy
from denoisekit.eval import on_data_fraction, sliced_wasserstein
from denoisekit.nets import MLP


def test_mlp_learns_two_moons(tmp_path):
    start = time.time()
    data = make_toy("moons", 10000, seed=0)
    held_out = make_toy("moons", 2000, seed=1).x
    torch.manual_seed(0)
    denoiser = Denoiser(MLP(hidden=128, depth=3, time_embedding="fourier"), DiscreteVP(), "edm")
    untrained = generate(denoiser, 2000, (2,), steps=250, seed=3)
    cfg = TrainConfig(steps=1200, batch_size=256, lr=2e-3, warmup_steps=50, progress=False, tensorboard=False,
                      checkpoint_every=10**6)
    ema = Trainer(denoiser, SimpleLoss(t_sampling="lognormal"), data, tmp_path, cfg).train()
    samples = generate(ema, 2000, (2,), steps=250, seed=3)
    elapsed = time.time() - start
    floor = sliced_wasserstein(make_toy("moons", 2000, seed=2).x, held_out)  # data against data
    swd, frac = sliced_wasserstein(samples, held_out), on_data_fraction(samples, held_out)
    swd0, frac0 = sliced_wasserstein(untrained, held_out), on_data_fraction(untrained, held_out)
    print(f"\nSWD trained {swd:.4f} untrained {swd0:.4f} data {floor:.4f}; on-data {frac:.3f} vs {frac0:.3f}; "
          f"{elapsed:.0f}s")
    assert swd < 2 * floor + 0.01 and frac > 0.8
    assert swd0 > 2 * floor + 0.01 and frac0 < 0.8  # the same thresholds reject an untrained model
    assert elapsed < 90
