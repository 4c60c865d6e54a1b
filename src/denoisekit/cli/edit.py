"""`denoisekit edit RUN image.png --mask mask.png | --strength S`: zero-shot inpainting and SDEdit image-to-image with
any trained image model (a consistency model by its own Algorithm 4)."""
from __future__ import annotations

from .flags import check_output


def _check_args(args) -> None:
    """Every flag's value, before the model is loaded."""
    from ..images import PICTURE_FORMATS
    from ..utils import check_device
    if (args.mask is None) == (args.strength is None):
        raise ValueError("--mask/--strength: give exactly one: --mask MASK.png to inpaint, or --strength S in (0, 1] "
                         "for image-to-image")
    if args.strength is not None and not 0 < args.strength <= 1:
        raise ValueError(f"--strength: expected a number in (0, 1] (the share of the noise schedule to redo), got "
                         f"{args.strength}")
    for flag, value in (("--steps", args.steps), ("--n", args.n), ("--resample", args.resample)):
        if value is not None and value < 1:
            raise ValueError(f"{flag}: expected a positive integer, got {value}")
    if args.seed < 0:
        raise ValueError(f"--seed: expected an integer >= 0, got {args.seed}")
    if args.mask is not None and args.sampler is not None:
        raise ValueError("--sampler: inpainting runs ancestral DDPM steps (or a consistency model's own Algorithm 4); "
                         "--sampler applies to --strength")
    check_output("--out", args.out, PICTURE_FORMATS)
    check_device(args.device, "--device")


def cmd_edit(args) -> int:
    """`denoisekit edit`: parsed arguments in, exit status out."""
    import torch

    from ..data import load_image_file
    from ..images import save_picture
    from ..models import load_model
    from ..samplers import check_request, consistency_inpaint, inpaint, sampling_times, sdedit
    from ..samplers.registry import DEFAULT_SCHEDULES
    from ..utils import sample_generators
    _check_args(args)
    model = load_model(args.checkpoint, ema=not args.raw, device=args.device)
    model.require_pixels("checkpoint")
    if not model.is_image:
        raise ValueError(f"checkpoint: {args.checkpoint} is not an image model (data shape {list(model.shape)})")
    denoiser, shape = model.require_denoiser("checkpoint"), model.shape
    consistent = bool(getattr(denoiser, "consistency", False))
    if args.resample is not None and (consistent or args.mask is None):
        raise ValueError("--resample: RePaint's resampling applies to inpainting (--mask) with a diffusion model; a "
                         "consistency model inpaints by its Algorithm 4")
    labels = None
    if args.label is not None:
        if not model.num_classes:
            raise ValueError("--class: this model was trained without class labels")
        if not 0 <= args.label < model.num_classes:
            raise ValueError(f"--class: expected a class in 0..{model.num_classes - 1}, got {args.label}")
    images = torch.cat([load_image_file(p, shape) for p in args.images]).to(args.device)
    x = images.repeat_interleave(args.n, 0)
    if args.label is not None:
        labels = torch.full((len(x),), args.label, dtype=torch.long, device=args.device)
    gens = sample_generators(args.seed, len(x))
    sampler = "consistency" if consistent else "ddpm"
    steps = args.steps or (2 if consistent else 100)
    if args.mask is not None:
        mask = (load_image_file(args.mask, (1, *shape[1:])) <= 0).to(x.dtype).to(args.device)  # black: keep
        if bool(mask.all()):
            raise ValueError(f"--mask: {args.mask} has no white pixels, so there is nothing to fill (white: fill, "
                             f"black: keep)")
        schedule = args.schedule or DEFAULT_SCHEDULES.get(sampler, "uniform")
        check_request(sampler, schedule, {}, where="--schedule", process=denoiser.process, steps=steps)
        times = sampling_times(denoiser.process, steps, schedule)
        if consistent:
            out = consistency_inpaint(denoiser, x, mask, times, cond=labels, generator=gens, progress=True)
        else:
            out = inpaint(denoiser, x, mask, times, resample=args.resample or 1, cond=labels, generator=gens,
                          progress=True)
        shown = mask * images + (1 - mask) * images.new_tensor(-1.0)  # the input with the part to fill blacked out
        what = f"inpainted with {'Algorithm 4 of the consistency model' if consistent else 'DDPM replacement'}"
    else:
        sampler = args.sampler or sampler
        try:
            out = sdedit(denoiser, x, args.strength, steps=steps, sampler=sampler, schedule=args.schedule, cond=labels,
                         generator=gens, progress=True)
        except ValueError as e:
            raise ValueError(f"--sampler/--schedule: {e}") from None
        shown = images
        what = f"SDEdit at strength {args.strength:g} with {sampler}"
    rows = torch.cat([torch.cat([shown[i:i + 1], out[i * args.n:(i + 1) * args.n]]) for i in range(len(images))])
    saved = save_picture(rows, args.out, nrow=args.n + 1, scale=2 if shape[-1] <= 32 else 1)
    print(f"{what}, {steps} steps: {saved} (each row: the input, then {args.n} results)")
    return 0


def add_parsers(sub, common) -> None:
    """Register this file's verbs on the command line's subparsers (`common`: the flags every verb shares)."""
    from ..samplers import SAMPLERS, SCHEDULES
    from .flags import class_arg
    e = sub.add_parser("edit", parents=[common], help="inpaint images (--mask) or redo them from a noise level "
                       "(--strength, SDEdit) with a trained image model", description="Zero-shot editing: no "
                       "training. --mask: the mask's white pixels are filled, the black ones kept exactly (ancestral "
                       "DDPM with replacement and optional RePaint resampling; a consistency model uses Song et al. "
                       "2023, Alg. 4). --strength S: the image noised to the level S of the way up the schedule and "
                       "denoised from there (SDEdit, Meng et al. 2022): small S keeps detail, large S only layout.")
    e.add_argument("checkpoint", help="a checkpoint, run folder or distilled student of an image model")
    e.add_argument("images", nargs="+", help="image files (converted and resized to the model's images)")
    e.add_argument("--mask", help="an image the size of the inputs: white = fill, black = keep")
    e.add_argument("--strength", type=float, help="SDEdit's noise level as a share of the schedule, in (0, 1]")
    e.add_argument("--steps", type=int, help="sampling steps (default 100; 2 for a consistency model)")
    e.add_argument("--sampler", help=f"one of {', '.join(SAMPLERS)} (default: ddpm; consistency for a consistency "
                   f"model); with --strength only")
    e.add_argument("--schedule", help=f"step schedule: {', '.join(SCHEDULES)} (default: the sampler's own)")
    e.add_argument("--resample", type=int, help="--mask: RePaint's resampling, r times per step (default 1)")
    e.add_argument("--n", type=int, default=4, help="results per image (default 4)")
    e.add_argument("--class", dest="label", type=class_arg, help="the class of a class-conditional model")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--out", default="edited.png", help="a picture: per input, the input then its results")
    e.add_argument("--raw", action="store_true", help="use the raw weights instead of the EMA weights")
    e.add_argument("--device", default="cpu")
    e.set_defaults(func=cmd_edit)
