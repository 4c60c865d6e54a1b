"""`denoisekit export RUN --to diffusers OUT`: our model in another library's format."""
from __future__ import annotations

from pathlib import Path

from ..interop.export import FORMATS
from .flags import check_new_folder


def cmd_export(args) -> int:
    """`denoisekit export`: parsed arguments in, exit status out."""
    from ..interop.export import export_diffusers
    from ..models import load_model
    out = Path(args.out)
    check_new_folder("out", out)
    model = load_model(args.checkpoint, ema=not args.raw)
    export_diffusers(model, out)
    print(f"diffusers DDPMPipeline: {out} (DDPMPipeline.from_pretrained({str(out)!r}) samples it)")
    return 0


def add_parsers(sub, common) -> None:
    """Register this file's verbs on the command line's subparsers (`common`: the flags every verb shares)."""
    e = sub.add_parser("export", parents=[common], help="write a trained U-Net and its DDPM process as a diffusers "
                       "DDPMPipeline folder")
    e.add_argument("checkpoint", help="a run or checkpoint folder")
    e.add_argument("--to", choices=FORMATS, required=True, help="the format: diffusers (UNet2DModel + DDPMScheduler)")
    e.add_argument("out", help="a new folder for the pipeline")
    e.add_argument("--raw", action="store_true", help="export the raw weights instead of the EMA weights")
    e.set_defaults(func=cmd_export)
