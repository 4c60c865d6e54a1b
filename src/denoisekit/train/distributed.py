"""torch.distributed set-up when launched by torchrun (RANK / WORLD_SIZE in the environment)."""
from __future__ import annotations

import atexit
import datetime
import os

import torch
import torch.distributed as dist


def init_distributed(device: torch.device) -> tuple[int, int]:
    """Join the process group if torchrun started us; returns (rank, world_size)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(_leave)
    return dist.get_rank(), dist.get_world_size()


def _leave() -> None:
    """Leave the process group before the interpreter exits, together: a rank tearing its connections down while
    another still uses them aborts a process ('terminate called without an active exception', seen under FSDP on
    gloo). A peer that crashed is waited for at most a minute (gloo's monitored barrier)."""
    if not dist.is_initialized():
        return
    try:
        if dist.get_backend() == "gloo":
            dist.monitored_barrier(timeout=datetime.timedelta(seconds=60))
    except RuntimeError:  # a peer is gone: leave anyway
        pass
    dist.destroy_process_group()


def barrier(world: int) -> None:
    """Wait for every rank (a no-op in one process)."""
    if world > 1:
        dist.barrier()
