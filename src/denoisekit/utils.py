"""Small helpers: shape broadcasting and explicit, per-sample randomness."""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch

Generator = Union[torch.Generator, Sequence[torch.Generator], None]
TMP_MARK = ".tmp-"  # in the names of temporary files and folders, which a later run may remove


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


def check_device(name, where: str = "device") -> torch.device:
    """A device name checked before any work: parseable, and present on this machine ('auto' passes)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: expected a device name such as cpu, cuda, cuda:0 or auto, got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"{where}: {name!r} is not a device name; expected cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{where}: {name!r} asked for, but torch sees no CUDA device here; use cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{where}: {name!r} asked for, but this machine has {torch.cuda.device_count()} "
                             f"CUDA device(s)")
    elif device.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ValueError(f"{where}: 'mps' asked for, but torch sees no Apple GPU here; use cpu or auto")
        raise ValueError(f"{where}: 'mps' is not supported: the noise processes' tables are float64, which Apple's "
                         f"MPS backend lacks; use cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"{where}: {name!r} is not a device this library runs on; expected cpu, cuda, cuda:N or "
                         f"auto")
    return device


def atomic_save(path, save) -> Path:
    """Call save(tmp_path) then rename onto `path`, so no half-written file is ever left behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{TMP_MARK}", suffix=path.suffix or ".tmp")
    os.close(fd)
    try:
        save(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes files private; give them the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # CPU instructions without which bf16 matmuls run far slower than fp32


def cpu_flags() -> set:
    """The instruction-set flags this CPU reports (Linux's /proc/cpuinfo; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def bf16_support(device) -> tuple[bool, str]:
    """(whether bf16 autocast pays on `device`, why not when it does not): a CUDA GPU that supports bf16, or a CPU
    with avx512_bf16 / amx_bf16 (without them bf16 kernels are emulated, many times slower than fp32)."""
    device = torch.device(device)
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return True, ""
        return False, f"GPU {torch.cuda.get_device_name(device)} has no bf16 support"
    if device.type == "cpu":
        if cpu_flags() & set(BF16_CPU_FLAGS):
            return True, ""
        return False, "this CPU has no bf16 instructions (avx512_bf16 or amx_bf16), where bf16 runs several times " \
                      "slower than fp32"
    return False, f"bf16 autocast is not set up for device {device.type!r}"


def training_precision(amp: bool, device) -> str:
    """'bf16' when autocast is asked (train.amp) and pays on `device`; else 'fp32', with a one-line warning if asked."""
    if not amp:
        return "fp32"
    ok, why = bf16_support(device)
    if not ok:
        warnings.warn(f"train.amp: {why}; training in fp32 instead", stacklevel=3)
        return "fp32"
    return "bf16"
