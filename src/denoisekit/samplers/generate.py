"""n samples from a model, sample i seeded by (seed, i): what the command line, the trainer's pictures and the
benchmarks draw with."""
from __future__ import annotations

from typing import Optional

import torch

from ..utils import sample_generators
from .entry import sample


@torch.no_grad()
def generate(denoiser, n: int, shape, *, seed: int = 0, steps: int = 100, sampler: str = "ddpm",
             schedule: Optional[str] = None, labels=None, callback=None, progress: bool = False,
             stats: Optional[dict] = None, times: Optional[torch.Tensor] = None, **options) -> torch.Tensor:
    """n samples of data shape `shape` through `denoisekit.sample`, sample i seeded by (seed, i) so it does not depend
    on n; `labels` is the conditioning (a label tensor or a `Cond`). The prior is drawn in the process's state shape."""
    param = next(iter(denoiser.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    gens = sample_generators(seed, n)
    x_T = denoiser.process.prior_sample((n, *denoiser.process.state_shape(shape)), gens, device=device)
    denoiser.eval()
    return sample(denoiser, x_T, sampler, steps, schedule, times=times, cond=labels, generator=gens,
                  callback=callback, progress=progress, stats=stats, **options)


def balanced_labels(n: int, num_classes: Optional[int], device) -> Optional[torch.Tensor]:
    """Labels 0, 1, ..., K-1, 0, 1, ... for a class-conditional model; None without classes."""
    return torch.arange(n, device=device) % num_classes if num_classes else None
