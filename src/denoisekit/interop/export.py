"""Our models out: `denoisekit export RUN --to diffusers OUT` writes a trained U-Net and its discrete process as a
diffusers `DDPMPipeline` folder (a `UNet2DModel` with scale-shift ResNet blocks, and a `DDPMScheduler` whose
`trained_betas` are ours), so `DDPMPipeline.from_pretrained(OUT)` samples our model. Where the architecture does not
map (patches, BigGAN resampling, Fourier embeddings, GroupNorm groups or attention head sizes that differ between
levels, extra conditioning inputs) or the process is not DDPM's, a one-line error names the option."""
from __future__ import annotations

from pathlib import Path

import torch

from ..nets import UNet
from ..nets.unet import Attention, ResBlock, Resample
from ..processes import DiscreteVP
from .diffusers import import_diffusers

FORMATS = ("diffusers",)
PREDICTION_TYPES = {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}


def unet_config(net: UNet, cfg: dict, shape) -> dict:
    """The UNet2DModel arguments that rebuild `net` (cfg: its recorded config); a one-line error for what does not
    map."""
    for key, bad, why in (("patch_size", lambda v: v != 1, "diffusers' UNet2DModel has no pixel-unshuffle patches"),
                          ("resample", lambda v: v != "conv", "BigGAN resampling blocks do not map"),
                          ("time_embedding", lambda v: v != "sinusoidal", "only the sinusoidal embedding maps"),
                          ("cond_channels", lambda v: v, "an image concatenated to the input does not map"),
                          ("latent_dim", lambda v: v is not None, "a DDGAN generator's latent does not map"),
                          ("augment", lambda v: v, "a super-resolution stage's augmentation level does not map")):
        if bad(cfg.get(key, _default(key))):
            raise ValueError(f"export: net.{key} = {cfg.get(key)!r}: {why}")
    widths = [cfg.get("channels", 32) * m for m in cfg.get("channel_mult", (1, 2, 2))]
    groups = {m.num_groups for m in net.modules() if isinstance(m, torch.nn.GroupNorm)}
    if len(groups) != 1:
        raise ValueError(f"export: the U-Net's GroupNorm layers use {sorted(groups)} groups (widths {widths} and their "
                         f"skip concatenations); diffusers uses one norm_num_groups (net.channels >= 128 maps)")
    levels = list(cfg.get("attention_levels", ()))
    heads = cfg.get("num_heads", 4)
    head_dims = {widths[i] // heads for i in levels} | ({widths[-1] // heads} if levels else set())
    if len(head_dims) > 1:
        raise ValueError(f"export: attention at levels {levels} has head sizes {sorted(head_dims)} (the middle block's "
                         f"included); diffusers uses one attention_head_dim")
    num_classes = cfg.get("num_classes")
    return {"sample_size": list(shape[1:]), "in_channels": shape[0], "out_channels": net.conv_out.out_channels,
            "center_input_sample": False, "time_embedding_type": "positional", "freq_shift": 0,
            "flip_sin_to_cos": True, "block_out_channels": widths, "layers_per_block": cfg.get("num_res_blocks", 1),
            "down_block_types": ["AttnDownBlock2D" if i in levels else "DownBlock2D" for i in range(len(widths))],
            "up_block_types": ["AttnUpBlock2D" if i in levels else "UpBlock2D" for i in reversed(range(len(widths)))],
            "mid_block_scale_factor": 1, "downsample_padding": 1, "dropout": cfg.get("dropout", 0.0),
            "act_fn": "silu", "attention_head_dim": head_dims.pop() if head_dims else None,
            "norm_num_groups": next(iter(groups)), "attn_norm_num_groups": next(iter(groups)), "norm_eps": 1e-5,
            "resnet_time_scale_shift": "scale_shift", "add_attention": bool(levels),
            "num_class_embeds": num_classes + 1 if num_classes else None}


def _default(key: str):
    import inspect
    return inspect.signature(UNet).parameters[key].default


def _resblock(ours: ResBlock, prefix: str) -> dict:
    out = {f"{prefix}.{a}.{p}": getattr(getattr(ours, b), p) for a, b in (("norm1", "norm1"), ("conv1", "conv1"),
                                                                           ("time_emb_proj", "emb"), ("norm2", "norm2"),
                                                                           ("conv2", "conv2")) for p in ("weight", "bias")}
    if isinstance(ours.skip, torch.nn.Conv2d):
        out.update({f"{prefix}.conv_shortcut.weight": ours.skip.weight, f"{prefix}.conv_shortcut.bias": ours.skip.bias})
    return out


def _attention(ours: Attention, prefix: str) -> dict:
    c = ours.qkv.out_channels // 3
    w, b = ours.qkv.weight[:, :, 0, 0], ours.qkv.bias
    out = {f"{prefix}.group_norm.weight": ours.norm.weight, f"{prefix}.group_norm.bias": ours.norm.bias,
           f"{prefix}.to_out.0.weight": ours.proj.weight[:, :, 0, 0], f"{prefix}.to_out.0.bias": ours.proj.bias}
    for i, name in enumerate(("to_q", "to_k", "to_v")):
        out[f"{prefix}.{name}.weight"], out[f"{prefix}.{name}.bias"] = w[i * c:(i + 1) * c], b[i * c:(i + 1) * c]
    return out


def _layers(layers, prefix: str, counts: dict) -> dict:
    """One group of our layers (a ResBlock, its attention, a resampler) under a diffusers block's names."""
    out = {}
    for layer in layers:
        if isinstance(layer, ResBlock):
            out.update(_resblock(layer, f"{prefix}.resnets.{counts['resnets']}"))
            counts["resnets"] += 1
        elif isinstance(layer, Attention):
            out.update(_attention(layer, f"{prefix}.attentions.{counts['attentions']}"))
            counts["attentions"] += 1
        elif isinstance(layer, Resample):
            kind = "downsamplers" if layer.direction == "down" else "upsamplers"
            out.update({f"{prefix}.{kind}.0.conv.weight": layer.conv.weight, f"{prefix}.{kind}.0.conv.bias": layer.conv.bias})
    return out


def unet_state_dict(net: UNet, cfg: dict) -> dict:
    """Our U-Net's weights under UNet2DModel's parameter names."""
    sd = {"conv_in.weight": net.conv_in.weight, "conv_in.bias": net.conv_in.bias,
          "time_embedding.linear_1.weight": net.embed.noise[1].weight, "time_embedding.linear_1.bias": net.embed.noise[1].bias,
          "time_embedding.linear_2.weight": net.embed.noise[3].weight, "time_embedding.linear_2.bias": net.embed.noise[3].bias,
          "conv_norm_out.weight": net.norm_out.weight, "conv_norm_out.bias": net.norm_out.bias,
          "conv_out.weight": net.conv_out.weight, "conv_out.bias": net.conv_out.bias}
    if net.embed.label is not None:
        sd["class_embedding.weight"] = net.embed.label.weight
    levels, per = len(cfg.get("channel_mult", (1, 2, 2))), cfg.get("num_res_blocks", 1)
    down = iter(net.down)
    for level in range(levels):
        counts = {"resnets": 0, "attentions": 0}
        for _ in range(per + (level < levels - 1)):
            sd.update(_layers(next(down), f"down_blocks.{level}", counts))
    sd.update(_layers(net.mid, "mid_block", {"resnets": 0, "attentions": 0}))
    up = iter(net.up)
    for j in range(levels):
        counts = {"resnets": 0, "attentions": 0}
        for _ in range(per + 1):
            sd.update(_layers(next(up), f"up_blocks.{j}", counts))
    return {k: v.detach().clone().contiguous() for k, v in sd.items()}


def scheduler_config(denoiser) -> dict:
    """A DDPMScheduler config with our process's betas, prediction, variance and clipping."""
    process = denoiser.process
    if not isinstance(process, DiscreteVP):
        raise ValueError(f"export: process {type(process).__name__} does not map; diffusers' DDPMScheduler is DDPM's "
                         f"discrete process (process.kind ddpm)")
    if denoiser.prediction not in PREDICTION_TYPES:
        raise ValueError(f"export: prediction {denoiser.prediction!r} does not map; diffusers' schedulers take "
                         f"{', '.join(PREDICTION_TYPES)}")
    if getattr(denoiser, "consistency", False) or getattr(denoiser, "mixed_score", None) is not None:
        raise ValueError("export: a consistency model or a mixed score does not map to a diffusers UNet's output")
    clip = denoiser.clip_x0
    return {"num_train_timesteps": process.T, "trained_betas": process.betas.tolist(),
            "prediction_type": PREDICTION_TYPES[denoiser.prediction],
            "variance_type": "learned_range" if denoiser.learned_variance else "fixed_small",
            "clip_sample": clip is not None, "clip_sample_range": float(clip or 1.0), "timestep_spacing": "leading"}


def export_diffusers(model, out) -> Path:
    """Write a LoadedModel (a U-Net on DDPM's process) as a DDPMPipeline folder `out`; returns it."""
    net = getattr(model.denoiser, "net", None)
    if not isinstance(net, UNet) or model.codec is not None or model.super_resolution is not None:
        raise ValueError(f"export: {model.folder} is not a single-stage U-Net model in pixel space (a "
                         f"{type(net).__name__}{', latent' if model.codec is not None else ''}); only those map")
    cfg = model.record["model"]["net"]
    diffusers = import_diffusers()
    sched = diffusers.DDPMScheduler(**scheduler_config(model.denoiser))
    unet = diffusers.UNet2DModel(**unet_config(net, cfg, model.shape))
    missing, unexpected = unet.load_state_dict(unet_state_dict(net, cfg), strict=False)
    if missing or unexpected:
        raise ValueError(f"export: the U-Net's weights did not map ({len(missing)} missing, e.g. "
                         f"{(missing or unexpected)[:2]})")
    out = Path(out)
    diffusers.DDPMPipeline(unet.eval(), sched).save_pretrained(out)
    return out
