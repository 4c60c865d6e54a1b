"""Recipes: what a run config builds and trains, one file per stage: `config` (the run config, checked whole),
`build` (data, network, denoiser, loss), `run` (`denoisekit train` into a run folder) and `classifier` (the noisy
classifier of `denoisekit train-classifier`)."""
from .build import Run, build_dataset, build_denoiser, prepare_run, run_record
from .config import RunConfig, build_loss, build_process
from .run import train_run

__all__ = ["Run", "RunConfig", "build_dataset", "build_denoiser", "build_loss", "build_process", "prepare_run",
           "run_record", "train_run"]
