"""Training: a generic loop, EMA, checkpoints, distributed set-up."""
from .checkpoint import find_checkpoint, load_config, load_weights, save_checkpoint
from .ema import EMA
from .trainer import TrainConfig, Trainer

__all__ = ["EMA", "TrainConfig", "Trainer", "find_checkpoint", "load_config", "load_weights", "save_checkpoint"]
