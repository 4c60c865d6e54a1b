"""The trainer's settings: everything about optimisation, nothing about diffusion; the learning-rate schedule."""
from __future__ import annotations

import math
import typing
from dataclasses import dataclass, fields
from typing import Literal, Optional

from ..config import coerce, require
from ..utils import check_device
from .posthoc_ema import check_sigma_rel


@dataclass
class TrainConfig:
    """Everything about optimisation; nothing about diffusion."""
    steps: int = 1000
    batch_size: int = 64               # global batch, split over the ranks
    grad_accum: int = 1                # micro-batches per rank and optimizer step (gradients summed: the same step)
    data_workers: int = 0              # processes reading a streamed data set's batches ahead of training
    lr: float = 2e-4
    lr_schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = 100
    weight_decay: float = 0.0
    betas: tuple[float, ...] = (0.9, 0.999)
    grad_clip: Optional[float] = 1.0
    ema_decay: float = 0.999
    ema_warmup: bool = True
    ema_profiles: tuple[float, ...] = ()  # post-hoc EMA: sigma_rel of each power-function profile kept (e.g. 0.05, 0.1)
    ema_snapshot_every: int = 0        # steps between profile snapshots (0: with every checkpoint)
    seed: int = 0
    use_labels: bool = False           # pass the data set's conditioning (its labels) to the loss as `cond`
    log_every: int = 50
    checkpoint_every: int = 1000
    sample_every: int = 0              # 0: only at the end
    eval_every: int = 0                # 0: never; else call eval_fn every this many steps and at the end
    amp: bool = False                  # bfloat16 autocast where the device has bf16 (else fp32, with a warning)
    channels_last: bool = False        # NHWC memory layout for image networks
    compile: bool = False              # torch.compile the model
    fsdp: bool = False                 # under torchrun, shard parameters, gradients and optimizer state over the ranks
    device: str = "auto"
    tensorboard: bool = True
    progress: bool = True
    nonfinite: Literal["stop", "skip"] = "stop"  # a NaN/inf loss or gradient: stop with an error, or skip the step

    def __post_init__(self):
        hints = typing.get_type_hints(TrainConfig)
        for f in fields(self):  # types as a config file spells them: 10.7 steps or batch_size: true are refused
            setattr(self, f.name, coerce(getattr(self, f.name), hints[f.name], f.name))
        for name in ("steps", "batch_size", "grad_accum", "log_every", "checkpoint_every"):
            require(getattr(self, name) >= 1, name, "a positive integer", getattr(self, name))
        for name in ("warmup_steps", "sample_every", "eval_every", "seed", "ema_snapshot_every", "data_workers"):
            require(getattr(self, name) >= 0, name, "an integer >= 0 (0: never)" if name.endswith("every")
                    else "an integer >= 0", getattr(self, name))
        require(math.isfinite(self.lr) and self.lr > 0, "lr", "a positive number", self.lr)
        require(self.weight_decay >= 0, "weight_decay", "a number >= 0", self.weight_decay)
        require(0 <= self.ema_decay < 1, "ema_decay", "a number in [0, 1)", self.ema_decay)
        require(self.grad_clip is None or self.grad_clip > 0, "grad_clip", "a positive number or null", self.grad_clip)
        require(len(self.betas) == 2 and all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1
                                             for b in self.betas), "betas", "two numbers in [0, 1)", self.betas)
        self.betas = tuple(float(b) for b in self.betas)
        self.ema_profiles = tuple(check_sigma_rel(s, "ema_profiles") for s in self.ema_profiles)
        require(len(set(self.ema_profiles)) == len(self.ema_profiles), "ema_profiles", "distinct widths",
                list(self.ema_profiles))
        check_device(self.device)


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up over warmup_steps, then constant, or cosine decay to 0 over the remaining steps."""
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps > 0 else 1.0
    if cfg.lr_schedule == "cosine":
        progress = min(1.0, max(0, step + 1 - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
        return cfg.lr * warm * 0.5 * (1 + math.cos(math.pi * progress))
    return cfg.lr * warm
