"""diffusers models in: a local `UNet2DModel` folder with its `scheduler_config.json`, or a `DDPMPipeline` /
`DDIMPipeline` folder, opened as a LoadedModel, so every sampler, schedule, guidance wrapper and command of the library
runs on it. The scheduler config becomes our discrete VP process (its betas exactly as diffusers computes them), its
prediction type, clipping and variance; the UNet our network through a thin wrapper (k-diffusion's `external.py`
pattern). Nothing is downloaded (`local_files_only`); diffusers is an optional extra."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ..denoiser import Denoiser
from ..models import LoadedModel
from ..processes import DiscreteVP
from ..utils import check_device

EXTRA = "pip install 'denoisekit[diffusers]' (or pip install diffusers)"
PREDICTIONS = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}
VARIANCES = {"fixed_small": False, "fixed_small_log": False, "fixed_large": False, "fixed_large_log": False,
             "learned_range": True}  # learned_range: improved DDPM's interpolation v, split as ours is
PIPELINES = ("DDPMPipeline", "DDIMPipeline")


class DiffusersUNet(nn.Module):
    """A diffusers UNet2DModel as our network: (x_t, the process's step t, cond) -> its output; class labels go to
    its class embedding."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        labels = getattr(cond, "label", None)
        return self.unet(x, t, class_labels=labels).sample


def _read(path: Path) -> Optional[dict]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def find_parts(folder: Path) -> Optional[tuple[Path, Path]]:
    """(the UNet's folder, the scheduler config) of a diffusers pipeline or model folder; None if `folder` is not
    one. A pipeline of another kind is a one-line error."""
    index = _read(folder / "model_index.json")
    if index is not None:
        if index.get("_class_name") not in PIPELINES or "unet" not in index or "scheduler" not in index:
            raise ValueError(f"checkpoint: {folder} is a diffusers {index.get('_class_name')!r} pipeline; the "
                             f"pipelines that map are {', '.join(PIPELINES)} (a UNet2DModel and a scheduler)")
        return folder / "unet", folder / "scheduler" / "scheduler_config.json"
    config = _read(folder / "config.json")
    if config is None or "_class_name" not in config:
        return None
    if config["_class_name"] != "UNet2DModel":
        raise ValueError(f"checkpoint: {folder} holds a diffusers {config['_class_name']!r}; the model that maps is a "
                         f"UNet2DModel (with its scheduler_config.json beside it)")
    for candidate in (folder / "scheduler_config.json", folder.parent / "scheduler" / "scheduler_config.json"):
        if candidate.is_file():
            return folder, candidate
    raise ValueError(f"checkpoint: {folder} is a diffusers UNet2DModel without a scheduler_config.json beside it; "
                     f"save the scheduler there (scheduler.save_pretrained(folder)) so its noise schedule is known")


def diffusers_betas(cfg: dict) -> torch.Tensor:
    """The betas a diffusers scheduler config describes, computed as diffusers does (float32), in float64."""
    T = cfg.get("num_train_timesteps", 1000)
    if not isinstance(T, int) or T < 2:
        raise ValueError(f"scheduler_config.json: num_train_timesteps: expected an integer >= 2, got {T!r}")
    if cfg.get("trained_betas") is not None:
        return torch.tensor(cfg["trained_betas"], dtype=torch.float32).double()
    kind = cfg.get("beta_schedule", "linear")
    start, end = cfg.get("beta_start", 0.0001), cfg.get("beta_end", 0.02)
    if kind == "linear":
        return torch.linspace(start, end, T, dtype=torch.float32).double()
    if kind == "scaled_linear":
        return (torch.linspace(start**0.5, end**0.5, T, dtype=torch.float32) ** 2).double()
    if kind == "squaredcos_cap_v2":  # Nichol & Dhariwal's cosine alpha-bar, betas capped at 0.999
        f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        return torch.tensor([min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)], dtype=torch.float32).double()
    raise ValueError(f"scheduler_config.json: beta_schedule {kind!r} does not map; linear, scaled_linear, "
                     f"squaredcos_cap_v2 or trained_betas do")


def denoiser_settings(cfg: dict) -> dict:
    """Denoiser arguments (process, prediction, clip_x0, learned_variance) from a scheduler config; a setting that does
    not map is a one-line error naming its key."""
    prediction = cfg.get("prediction_type", "epsilon")
    if prediction not in PREDICTIONS:
        raise ValueError(f"scheduler_config.json: prediction_type {prediction!r} does not map; expected one of "
                         f"{', '.join(PREDICTIONS)}")
    variance = cfg.get("variance_type") or "fixed_small"
    if variance not in VARIANCES:
        raise ValueError(f"scheduler_config.json: variance_type {variance!r} does not map; expected one of "
                         f"{', '.join(VARIANCES)}")
    if cfg.get("thresholding"):
        raise ValueError("scheduler_config.json: thresholding: true does not map to the model; set it false and "
                         "sample with --threshold (dynamic thresholding, Saharia et al. 2022)")
    process = DiscreteVP("custom", betas=diffusers_betas(cfg), zero_terminal_snr=bool(cfg.get("rescale_betas_zero_snr")))
    clip = float(cfg.get("clip_sample_range", 1.0)) if cfg.get("clip_sample") else None
    return {"process": process, "prediction": PREDICTIONS[prediction], "clip_x0": clip,
            "learned_variance": VARIANCES[variance]}


def import_diffusers():
    """The diffusers package, or a one-line error naming the extra."""
    try:
        import diffusers
    except ImportError:
        raise ValueError(f"checkpoint: opening a diffusers model needs the diffusers package: {EXTRA}") from None
    return diffusers


def open_diffusers(path, *, ema: bool = True, device: str = "cpu"):
    """A LoadedModel from a local diffusers UNet2DModel folder (with its scheduler config) or DDPM/DDIM pipeline
    folder; None when `path` is not a diffusers folder (EMA weights do not apply: the folder holds one set)."""
    folder = Path(path)
    if not folder.is_dir():
        return None
    parts = find_parts(folder)
    if parts is None:
        return None
    unet_folder, scheduler_path = parts
    cfg = _read(scheduler_path)
    if cfg is None:
        raise ValueError(f"checkpoint: {scheduler_path} is not a JSON mapping")
    settings = denoiser_settings(cfg)
    unet = import_diffusers().UNet2DModel.from_pretrained(str(unet_folder), local_files_only=True)
    c, size = unet.config.in_channels, unet.config.sample_size
    shape = (c, *((size, size) if isinstance(size, int) else tuple(size)))
    expected = (2 if settings["learned_variance"] else 1) * c
    if unet.config.out_channels != expected:
        raise ValueError(f"checkpoint: {unet_folder} outputs {unet.config.out_channels} channels; with variance_type "
                         f"{cfg.get('variance_type') or 'fixed_small'} and {c} input channels it should output "
                         f"{expected}")
    denoiser = Denoiser(DiffusersUNet(unet), **settings).to(check_device(device)).eval()
    num_classes = unet.config.num_class_embeds
    record = {"data": {"shape": list(shape), "num_classes": num_classes},
              "run": {"class_cond": bool(num_classes)},
              "diffusers": {"folder": str(folder), "scheduler": cfg.get("_class_name"),
                            "timestep_spacing": cfg.get("timestep_spacing", "leading"),
                            "variance_type": cfg.get("variance_type") or "fixed_small",
                            "steps_offset": cfg.get("steps_offset", 0), "unet": dict(unet.config)}}
    return LoadedModel(denoiser, shape, num_classes, (), record, folder)
