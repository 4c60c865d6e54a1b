"""Small helpers: shape broadcasting and explicit, per-sample randomness."""
from __future__ import annotations

from typing import Sequence, Union

import numpy as np
import torch

Generator = Union[torch.Generator, Sequence[torch.Generator], None]


def append_dims(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """Append trailing singleton dimensions so a per-example tensor broadcasts against an `ndim` tensor."""
    if x.ndim > ndim:
        raise ValueError(f"append_dims: input has {x.ndim} dims, more than the target {ndim}")
    return x.reshape(*x.shape, *([1] * (ndim - x.ndim)))


def sample_generators(seed: int, n: int, offset: int = 0) -> list[torch.Generator]:
    """One CPU generator per sample, keyed by (seed, index): sample i is the same whatever the batch size."""
    gens = []
    for i in range(offset, offset + n):
        state = np.random.SeedSequence([int(seed), i]).generate_state(2, dtype=np.uint32)
        gens.append(torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1])))
    return gens


def randn(shape: Sequence[int], generator: Generator = None, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """Standard normal noise from one generator, or one row per generator when given a list (on CPU, then moved)."""
    if generator is None or isinstance(generator, torch.Generator):
        gen_device = generator.device if generator is not None else device
        return torch.randn(tuple(shape), generator=generator, device=gen_device, dtype=dtype).to(device)
    if len(generator) != shape[0]:
        raise ValueError(f"randn: got {len(generator)} generators for a batch of {shape[0]}")
    rows = [torch.randn(tuple(shape[1:]), generator=g, device=g.device, dtype=dtype) for g in generator]
    return torch.stack(rows).to(device)


def rand(shape: Sequence[int], generator: Generator = None, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """Uniform [0, 1) numbers from one generator, or one row per generator when given a list."""
    if generator is None or isinstance(generator, torch.Generator):
        gen_device = generator.device if generator is not None else device
        return torch.rand(tuple(shape), generator=generator, device=gen_device, dtype=dtype).to(device)
    rows = [torch.rand(tuple(shape[1:]), generator=g, device=g.device, dtype=dtype) for g in generator]
    return torch.stack(rows).to(device)
