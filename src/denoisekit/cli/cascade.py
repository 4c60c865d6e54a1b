"""Cascaded generation: `denoisekit sample --cascade BASE_RUN SR_RUN` and `denoisekit upscale SR_RUN IMAGE...`."""
from __future__ import annotations

import copy
from pathlib import Path

from .flags import add_sampling_flags, check_guidance_args, check_output, check_sampling_args, class_arg, guided


def _stage_options(args, folder) -> tuple:
    """(sampler, steps, schedule, options) for one stage: the flags if given, else the stage's own recorded best or
    fallback."""
    stage = copy.copy(args)
    options = check_sampling_args(stage, folder)
    if stage.schedule == "auto":
        raise ValueError("--schedule: 'auto' is fitted to one model; with --cascade name a fixed schedule")
    return dict(sampler=stage.sampler, steps=stage.steps, schedule=stage.schedule, **options)


def _open_sr(path, args):
    """The super-resolution stage at `path` with its SuperResolution settings, or a one-line error."""
    from ..models import load_model
    model = load_model(path, ema=not args.raw, device=args.device)
    sr = model.super_resolution
    if sr is None:
        raise ValueError(f"SR_RUN: {model.folder} is not a super-resolution stage (train one with "
                         f"--super-resolution LOW_SIZE)")
    return model, sr


def _aug_level(args, sr) -> float:
    from ..cascade import check_aug_level
    return sr.aug_level if args.aug_level is None else check_aug_level(args.aug_level, "--aug-level")


def _sr_denoiser(args, model):
    """The SR stage's denoiser, with dynamic thresholding if asked (it applies in each stage)."""
    return model.guided(threshold=args.threshold)[0]


def cmd_sample_cascade(args) -> int:
    """Samples of a low-resolution base model, super-resolved by a second model (Ho et al. 2021)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from ..cascade import upscale
    from ..images import PICTURE_FORMATS, atomic_save, save_picture, save_row_strip
    from ..models import load_model
    from ..samplers import generate
    from ..utils import check_device
    from .sample import _checkpoint_folder, class_labels, prompt_conditioning, prompts_per_sample, read_prompts
    if args.cascade is None:
        raise ValueError("checkpoint: name the model to sample, or --cascade BASE_RUN SR_RUN")
    if args.checkpoint is not None:
        raise ValueError(f"checkpoint: --cascade names both models; drop {args.checkpoint!r}")
    if args.gif:
        raise ValueError("--gif: the reverse-process GIF is for one model; with --cascade, --strip shows the stages")
    base_path, sr_path = args.cascade
    if args.aug_level is not None:
        _aug_level(args, None)
    stages = [_stage_options(args, _checkpoint_folder(p)) for p in (base_path, sr_path)]
    out = Path(args.out)
    strip = args.strip or str(out.with_name(f"{out.stem}-stages{out.suffix}"))
    for flag, path, suffixes in (("--out", args.out, PICTURE_FORMATS), ("--strip", strip, PICTURE_FORMATS),
                                 ("--npz", args.npz, [".npz"])):
        check_output(flag, path, suffixes)
    check_device(args.device, "--device")
    if args.scale is not None and args.scale < 1:
        raise ValueError(f"--scale: expected a positive integer, got {args.scale}")
    check_guidance_args(args)
    prompts = read_prompts(args)
    base = load_model(base_path, ema=not args.raw, device=args.device)
    base.require_single_stage("BASE_RUN")
    model, sr = _open_sr(sr_path, args)
    low_shape = sr.low_shape(model.shape)
    if tuple(base.data_shape) != tuple(low_shape):
        raise ValueError(f"--cascade: {base.folder} makes images of shape {list(base.data_shape)}, but the "
                         f"super-resolution stage {model.folder} completes {list(low_shape)} ones")
    if base.num_classes and model.num_classes and base.num_classes != model.num_classes:
        raise ValueError(f"--cascade: the base model knows {base.num_classes} classes, the SR stage "
                         f"{model.num_classes}")
    u = _aug_level(args, sr)
    denoiser, num_classes = guided(args, base, prompts_per_sample(args, prompts))
    labels, nrow = prompt_conditioning(args, base, prompts) if prompts or base.text else \
        class_labels(args, num_classes)
    if model.text:  # each stage reads the prompts through its own tokenizer (Imagen: one frozen encoder for both)
        sr_labels = model.prompts(prompts_per_sample(args, prompts) or [""] * args.n, "--prompt")
    else:
        sr_labels = labels if model.num_classes else None
    stats: dict = {}
    with torch.no_grad():
        print(f"stage 1: {list(base.data_shape)} from {base.folder}")
        low = base.decode(generate(denoiser, args.n, base.shape, seed=args.seed, labels=labels, progress=True,
                                   stats=stats, **stages[0])).clamp(-1, 1)
        nfe = stats["nfe"]
        print(f"stage 2: {list(model.shape)} from {model.folder}, its input augmented at level {u:g}")
        x = upscale(_sr_denoiser(args, model), low, model.shape[1:], aug_level=u, seed=args.seed,
                    labels=sr_labels,
                    generate_kwargs=dict(progress=True, stats=stats, **stages[1]))
    print(f"network evaluations: {nfe} (base) + {stats['nfe']} (super-resolution) per sample")
    scale = args.scale or (2 if model.shape[-1] <= 32 else 1)
    rows = " (one row per prompt)" if prompts else " (one row per class)" if nrow else ""
    print(f"samples: {save_picture(x, args.out, nrow=nrow, scale=scale)}{rows}")
    k = min(16, args.n)
    near = F.interpolate(low[:k].cpu(), size=tuple(model.shape[1:]), mode="nearest")
    print(f"stages (low resolution | super-resolved): {save_row_strip([near, x[:k].cpu()], strip, scale=scale)}")
    if args.npz:
        arrays = {"x": x.cpu().numpy(), "low": low.cpu().numpy()}
        atomic_save(args.npz, lambda p: np.savez(p, **arrays))
        print(f"arrays: {args.npz} (x: super-resolved, low: the base model's samples)")
    return 0


def cmd_upscale(args) -> int:
    """A user's own low-resolution images completed by a super-resolution stage: each input beside its --n versions."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from ..cascade import upscale
    from ..data import load_image_file
    from ..images import PICTURE_FORMATS, atomic_save, save_row_strip
    from ..utils import check_device
    from .sample import _checkpoint_folder
    if args.aug_level is not None:
        _aug_level(args, None)
    options = _stage_options(args, _checkpoint_folder(args.checkpoint))
    for flag, path, suffixes in (("--out", args.out, PICTURE_FORMATS), ("--npz", args.npz, [".npz"])):
        check_output(flag, path, suffixes)
    check_device(args.device, "--device")
    if args.threshold is not None:
        from ..guidance import DynamicThresholding
        DynamicThresholding(None, args.threshold)
    for image in args.images:
        if not Path(image).is_file():
            raise FileNotFoundError(f"image: no such file {image}")
    model, sr = _open_sr(args.checkpoint, args)
    low_shape = sr.low_shape(model.shape)
    if args.label is not None:
        if not model.num_classes:
            raise ValueError("--class: this super-resolution stage was trained without class labels")
        if args.label == "all" or not 0 <= args.label < model.num_classes:
            raise ValueError(f"--class: expected a class in 0..{model.num_classes - 1}, got {args.label}")
    low = torch.cat([load_image_file(p, low_shape, exact=True) for p in args.images]).to(args.device)
    low = low.repeat_interleave(args.n, 0)  # image i's versions side by side
    labels = None if args.label is None else torch.full((len(low),), args.label, dtype=torch.long,
                                                        device=args.device)
    u = _aug_level(args, sr)
    print(f"upscaling {len(args.images)} image(s) {low_shape[1]}x{low_shape[2]} -> {model.shape[1]}x{model.shape[2]}"
          f" with {model.folder}, {args.n} version(s) each, input augmented at level {u:g}")
    with torch.no_grad():
        x = upscale(_sr_denoiser(args, model), low, model.shape[1:], aug_level=u, seed=args.seed, labels=labels,
                    generate_kwargs=dict(progress=True, **options)).cpu()
    near = F.interpolate(low[:: args.n].cpu(), size=tuple(model.shape[1:]), mode="nearest")
    columns = [near] + [x[j:: args.n] for j in range(args.n)]
    print(f"upscaled (input | {args.n} version(s)): {save_row_strip(columns, args.out, scale=2)}")
    if args.npz:
        arr = x.numpy()
        atomic_save(args.npz, lambda p: np.savez(p, x=arr))
        print(f"arrays: {args.npz}")
    return 0


def add_parsers(sub, common) -> None:
    """Register this file's verbs on the command line's subparsers (`common`: the flags every verb shares)."""
    u = sub.add_parser("upscale", parents=[common], help="super-resolve your own low-resolution images with a "
                       "super-resolution stage (train --super-resolution)",
                       description="Complete low-resolution images with a super-resolution stage of a cascade (Ho et "
                       "al. 2021). Each image must be exactly the stage's input size and have its channels (1: grey, "
                       "3: RGB). Writes one row per image: the input, then --n super-resolved versions.")
    u.add_argument("checkpoint", metavar="SR_RUN", help="a super-resolution stage's checkpoint or run folder")
    u.add_argument("images", nargs="+", metavar="IMAGE", help="low-resolution image files (PNG, JPEG, ...)")
    u.add_argument("--n", type=int, default=1, help="super-resolved versions of each image (default 1)")
    u.add_argument("--aug-level", type=float, dest="aug_level", metavar="U", help="the noise level in [0, 1] the "
                   "input is augmented with (default: the one the stage was trained to use)")
    u.add_argument("--seed", type=int, default=0)
    add_sampling_flags(u)
    u.add_argument("--threshold", type=float, metavar="P", help="Imagen's dynamic thresholding at percentile P")
    u.add_argument("--class", "--label", dest="label", type=class_arg, metavar="K",
                   help="the class of the images (a class-conditional stage; default: its null label)")
    u.add_argument("--out", default="upscaled.png")
    u.add_argument("--npz", help="also write the super-resolved images as arrays")
    u.add_argument("--raw", action="store_true", help="use the raw weights instead of the EMA weights")
    u.add_argument("--device", default="cpu")
    u.set_defaults(func=cmd_upscale)
