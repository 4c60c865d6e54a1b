"""`denoisekit invert` and `denoisekit interpolate`: deterministic DDIM encoding of images and slerp between them."""
from __future__ import annotations

from ..samplers import SCHEDULES
from .flags import check_output


def _image_model(args):
    """A trained image model and its (C, H, W), for the commands that take image files."""
    from ..models import load_model
    from ..utils import check_device
    check_device(args.device, "--device")
    if args.steps < 1:
        raise ValueError(f"--steps: expected a positive number of steps, got {args.steps}")
    if args.iters < 1:
        raise ValueError(f"--iters: expected a positive number of fixed-point iterations, got {args.iters}")
    model = load_model(args.checkpoint, ema=not args.raw, device=args.device)
    model.require_pixels("checkpoint")
    if not model.is_image:
        raise ValueError(f"checkpoint: {args.checkpoint} is not an image model (data shape {list(model.shape)})")
    return model.require_denoiser("checkpoint"), model.shape


def cmd_invert(args) -> int:
    """`denoisekit invert`: parsed arguments in, exit status out."""
    import numpy as np
    import torch

    from ..data import load_image_file
    from ..images import PICTURE_FORMATS, atomic_save, save_picture
    from ..samplers import ddim_invert, ddim_sample, sampling_times
    check_output("--out", args.out, [".npz"])
    check_output("--reconstruction", args.reconstruction, PICTURE_FORMATS)
    denoiser, shape = _image_model(args)
    x0 = torch.cat([load_image_file(p, shape) for p in args.images]).to(args.device)
    times = sampling_times(denoiser.process, args.steps, args.schedule)
    z = ddim_invert(denoiser, x0, times.flip(0), iters=args.iters, progress=True)
    arr = z.cpu().numpy()
    atomic_save(args.out, lambda p: np.savez(p, x_T=arr, times=times.numpy()))
    print(f"encoded noise x_T: {args.out}")
    if args.reconstruction:
        x = ddim_sample(denoiser, z, times, progress=True)
        err = float((x - x0).norm() / x0.norm())
        save_picture(torch.cat([x0, x]), args.reconstruction, nrow=len(x0), scale=2 if shape[-1] <= 32 else 1)
        print(f"reconstruction (top: input, bottom: decoded): {args.reconstruction}; relative error {err:.2e}")
    return 0


def cmd_interpolate(args) -> int:
    """`denoisekit interpolate`: parsed arguments in, exit status out."""
    from ..data import load_image_file
    from ..images import PICTURE_FORMATS, save_picture
    from ..samplers import ddim_interpolate, sampling_times
    if args.frames < 2:
        raise ValueError(f"--frames: expected at least 2 frames, got {args.frames}")
    check_output("--out", args.out, PICTURE_FORMATS)
    denoiser, shape = _image_model(args)
    x_a, x_b = (load_image_file(p, shape).to(args.device) for p in (args.a, args.b))
    times = sampling_times(denoiser.process, args.steps, args.schedule)
    frames = ddim_interpolate(denoiser, x_a, x_b, times, args.frames, iters=args.iters, progress=True)
    out = save_picture(frames[:, 0], args.out, nrow=args.frames, scale=2 if shape[-1] <= 32 else 1)
    print(f"interpolation ({args.frames} frames, slerp between the DDIM-encoded noises): {out}")
    return 0


def add_parsers(sub, common) -> None:
    """Register this file's verbs on the command line's subparsers (`common`: the flags every verb shares)."""
    def add_ddim_flags(c):
        c.add_argument("checkpoint", help="a checkpoint folder or a run folder of an image model")
        c.add_argument("--steps", type=int, default=100, help="DDIM steps (default 100)")
        c.add_argument("--schedule", default="uniform", choices=[k for k in SCHEDULES if k != "auto"])
        c.add_argument("--iters", type=int, default=3, help="fixed-point iterations per inversion step (default 3)")
        c.add_argument("--raw", action="store_true", help="use the raw weights instead of the EMA weights")
        c.add_argument("--device", default="cpu")

    v = sub.add_parser("invert", parents=[common], help="encode images to noise x_T with deterministic DDIM (Song et "
                       "al. 2021, 4.3)")
    add_ddim_flags(v)
    v.add_argument("images", nargs="+", help="image files (converted and resized to the model's images)")
    v.add_argument("--out", default="inverted.npz", help="the encoded noises as an .npz (x_T, times)")
    v.add_argument("--reconstruction", help="also decode the noises again and write input and result as a PNG")
    v.set_defaults(func=cmd_invert)

    q = sub.add_parser("interpolate", parents=[common], help="slerp between two images' DDIM-encoded noises and "
                       "decode each frame")
    add_ddim_flags(q)
    q.add_argument("a", help="first image file")
    q.add_argument("b", help="second image file")
    q.add_argument("--frames", type=int, default=8)
    q.add_argument("--out", default="interpolation.png")
    q.set_defaults(func=cmd_interpolate)
