"""`denoisekit ema RUN --sigma-rel S --out RUN2`: a run whose weights are the post-hoc EMA of width S (Karras et al.
2024), reconstructed from the power-function profiles RUN kept during training."""
from __future__ import annotations

from pathlib import Path

from .flags import check_new_folder


def cmd_ema(args) -> int:
    """`denoisekit ema`: parsed arguments in, exit status out."""
    from ..train.checkpoint import find_checkpoint, load_config, load_weights, save_checkpoint
    from ..train.posthoc_ema import check_sigma_rel, list_snapshots, reconstruct
    check_sigma_rel(args.sigma_rel, "--sigma-rel")
    run, out = Path(args.run), Path(args.out)
    if not run.is_dir():
        raise ValueError(f"run: {run} is not a run folder")
    if out.resolve() == run.resolve():
        raise ValueError("--out: must be a new folder, not the run itself")
    check_new_folder("--out", out)
    if args.step is not None and args.step < 1:
        raise ValueError(f"--step: expected a positive training step, got {args.step}")
    list_snapshots(run)  # one line when the run kept no profiles, before anything else is read
    source = find_checkpoint(run)
    config = load_config(source)
    weights, report = reconstruct(run, args.sigma_rel, args.step)
    expected = load_weights(source, ema=False)
    if set(weights) != set(expected) or any(weights[k].shape != expected[k].shape for k in expected):
        raise ValueError(f"ema: the profile snapshots in {run} do not match the network of {source}")
    config = {**config, "posthoc_ema": {**report, "from": str(run)}}
    folder = save_checkpoint(out / "checkpoints" / f"step-{report['step']:07d}", weights, weights, config, None)
    print(f"post-hoc EMA sigma_rel {report['sigma_rel']:g} (gamma {report['gamma']:.3f}) at step {report['step']} "
          f"from {report['snapshots']} snapshots; relative residual of the fit {report['relative_residual']:.2e}")
    print(f"checkpoint: {folder} (sample or eval it as any run: denoisekit sample {out})")
    return 0


def add_parsers(sub, common) -> None:
    """Register this file's verbs on the command line's subparsers (`common`: the flags every verb shares)."""
    e = sub.add_parser("ema", parents=[common], help="reconstruct any EMA length after training from the run's "
                       "power-function EMA profiles (post-hoc EMA, Karras et al. 2024)")
    e.add_argument("run", help="a run folder trained with train.ema_profiles")
    e.add_argument("--sigma-rel", dest="sigma_rel", type=float, required=True,
                   help="the EMA length as a fraction of the training so far, in (0, 0.3); e.g. 0.05")
    e.add_argument("--step", type=int, help="the training step to average up to (default: the last snapshot)")
    e.add_argument("--out", required=True, help="a new run folder for the result")
    e.set_defaults(func=cmd_ema)
