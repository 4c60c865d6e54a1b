"""`denoisekit distill --method progressive|consistency|reflow --teacher RUN --out RUN2`: a few-step student;
`denoisekit reflow --teacher RUN --out RUN2`, the same with method reflow."""
from __future__ import annotations

from pathlib import Path

from .flags import _parse_value, _set_path, read_run_config


def distill_config(args):
    """The distillation config from --config, the named flags and --set, checked whole."""
    from ..recipes.distill import DistillConfig
    raw: dict = read_run_config(args.config) if args.config else {}
    for flag, key in (("distill_method", "method"), ("steps_per_stage", "train.steps"), ("batch_size", "train.batch_size"),
                      ("lr", "train.lr"), ("seed", "train.seed"), ("device", "train.device"),
                      ("distance", "loss.distance"), ("guidance", "guidance"), ("prediction", "prediction"),
                      ("pairs", "pairs.n"), ("pair_sampler", "pairs.sampler"), ("pair_steps", "pairs.steps")):
        if getattr(args, flag, None) is not None:
            _set_path(raw, key, getattr(args, flag))
    if args.stages is not None:
        raw["stages"] = args.stages
    for item in args.set or []:
        if "=" not in item:
            raise ValueError(f"--set: expected KEY=VALUE (e.g. train.lr=1e-4), got {item!r}")
        k, v = item.split("=", 1)
        _set_path(raw, k.strip(), _parse_value(v))
    return DistillConfig.from_dict(raw)


def _stages(text: str) -> list:
    import argparse
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected step counts separated by commas (e.g. 32,16,8), got {text!r}") \
            from None


def cmd_distill(args) -> int:
    """`denoisekit distill`: parsed arguments in, exit status out."""
    from ..recipes.distill import distill, prepare_distillation
    dc = distill_config(args)
    if args.out is None:
        raise ValueError("--out: name a new folder for the student's stages")
    prep = prepare_distillation(dc, args.teacher, Path(args.out))
    if args.check:
        print(f"config valid: {prep.summary()}")
        return 0
    last = distill(prep, resume=not args.no_resume)
    print(f"student: {last} (denoisekit sample {args.out})")
    return 0


def add_parsers(sub, common) -> None:
    """Register this file's verbs on the command line's subparsers (`common`: the flags every verb shares)."""
    from ..recipes.distill import METHODS
    d = sub.add_parser("distill", parents=[common], help="distill a trained model into a few-step student: "
                       "progressive distillation (stages halving the steps), consistency distillation or reflow",
                       description="Distill a diffusion run into a student that samples in 1-4 network evaluations. "
                       "progressive (Salimans & Ho 2022): stages of students each taking half their teacher's DDIM "
                       "steps, each stage a resumable run folder under OUT/stages whose student teaches the next. "
                       "consistency (Song et al. 2023): one stage training the consistency function f from the "
                       "teacher's probability-flow ODE steps. reflow (Liu et al. 2023): a flow-matching teacher's ODE "
                       "couplings (z, x) drawn once into OUT, and a flow trained on them. Running the same command "
                       "again resumes.")
    d.add_argument("--method", dest="distill_method", choices=METHODS, help="the distillation (default progressive)")
    _distill_flags(d)
    r = sub.add_parser("reflow", parents=[common], help="straighten a flow-matching model's paths: train a flow on "
                       "the couplings its ODE makes (rectified flow, Liu et al. 2023) for 1-2 step sampling",
                       description="Reflow (Liu et al. 2023, sec. 2.3): draw --pairs couplings (z, x) from the "
                       "teacher's deterministic ODE (--pair-sampler, --pair-steps; saved in OUT and reused on resume), "
                       "then train a copy of the teacher on them by the flow-matching loss, so its paths straighten "
                       "and a step or two of Euler sample it. 'denoisekit distill --method reflow' with the same flags.")
    _distill_flags(r)
    r.set_defaults(distill_method="reflow")


def _distill_flags(d) -> None:
    d.add_argument("--teacher", required=True, help="a run folder or checkpoint of a trained diffusion model (reflow: "
                   "a flow-matching one)")
    d.add_argument("--out", help="a folder for the stages (the student is its last stage)")
    d.add_argument("--config", help="YAML distillation config (method, stages, prediction, guidance, loss, pairs, "
                   "train, sample); flags override it")
    d.add_argument("--stages", type=_stages, help="progressive: the students' steps, each half the one before "
                   "(default 32,16,8,4,2,1; the first teacher takes twice the first)")
    d.add_argument("--steps-per-stage", type=int, dest="steps_per_stage", help="training steps of each stage "
                   "(default 500)")
    d.add_argument("--pairs", type=int, help="reflow: the couplings (z, x) drawn from the teacher (default 5000)")
    d.add_argument("--pair-sampler", dest="pair_sampler", help="reflow: the deterministic ODE solver drawing them "
                   "(default dpmpp_2m)")
    d.add_argument("--pair-steps", type=int, dest="pair_steps", help="reflow: its steps (default 20)")
    d.add_argument("--distance", help="consistency: l2, l1 or pseudo_huber (the default)")
    d.add_argument("--prediction", help="the student's prediction type (default: the teacher's, or v for an eps "
                   "teacher in progressive distillation, flow for reflow)")
    d.add_argument("--guidance", type=float, metavar="W", help="fold classifier-free guidance w into the student "
                   "(a class-conditional teacher trained with label dropout)")
    d.add_argument("--batch-size", type=int, dest="batch_size")
    d.add_argument("--lr", type=float)
    d.add_argument("--seed", type=int)
    d.add_argument("--device")
    d.add_argument("--set", action="append", metavar="KEY=VALUE", help="any config field, e.g. loss.levels=40")
    d.add_argument("--check", action="store_true", help="validate the config, open the teacher and build the "
                   "student, then exit without training or writing anything")
    d.add_argument("--no-resume", action="store_true", dest="no_resume", help="start afresh: remove OUT's stages "
                   "(and reflow's pairs) first")
    d.set_defaults(func=cmd_distill)
