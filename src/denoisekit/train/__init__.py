"""Training: a generic loop, EMA, checkpoints, distributed set-up."""
from .checkpoint import find_checkpoint, load_config, load_weights, save_checkpoint
from .ema import EMA
from .config import TrainConfig
from .phases import Phase
from .trainer import Trainer

__all__ = ["EMA", "Phase", "TrainConfig", "Trainer", "find_checkpoint", "load_config", "load_weights", "save_checkpoint"]
