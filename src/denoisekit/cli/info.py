"""`denoisekit nll` and `denoisekit info`."""
from __future__ import annotations

import json
from pathlib import Path

from ..likelihood import METHODS, PROBES
from ..vlb import VARIANCES
from .flags import check_output, terms_arg


def cmd_nll(args) -> int:
    """`denoisekit nll`: parsed arguments in, exit status out."""
    import torch

    from ..data import load_dataset
    from ..likelihood import data_nll
    from ..models import load_model
    from ..utils import check_device
    from ..vlb import resolve_variance
    for flag, value, least in (("--n", args.n, 2), ("--batch-size", args.batch_size, 1), ("--seed", args.seed, 0)):
        if value < least:
            raise ValueError(f"{flag}: expected an integer >= {least}, got {value}")
    for flag in ("rtol", "atol"):
        if not getattr(args, flag) > 0:
            raise ValueError(f"--{flag}: expected a positive tolerance, got {getattr(args, flag)}")
    check_output("--json", args.json, [".json"])
    check_device(args.device, "--device")
    model = load_model(args.checkpoint, ema=not args.raw, device=args.device)
    model.require_single_stage("checkpoint")
    denoiser = model.require_denoiser("checkpoint")
    if model.joint is not None:
        check_joint_flags(args)
    elif args.method != "ode":
        resolve_variance(denoiser, args.variance)
        T = len(denoiser.process.trained_times())
        if args.terms is not None and args.terms > T - 1:
            raise ValueError(f"--terms: the model has T = {T} steps, so at most {T - 1} strata besides L_0; got "
                             f"{args.terms}")
    name = args.data or model.data_name
    if not name:
        raise ValueError("--data: name the data set (this checkpoint records none)")
    ds = load_dataset(name)
    if tuple(ds.x.shape[1:]) != model.data_shape:
        raise ValueError(f"--data: {name!r} holds {list(ds.x.shape[1:])} data; the model was trained on "
                         f"{list(model.data_shape)}")
    labels = None
    if model.num_classes:
        if ds.y is None:
            raise ValueError(f"--data: the model is class-conditional and {name!r} has no labels")
        labels = ds.y
    if args.n > len(ds):
        raise ValueError(f"--n: {args.n} is more than the data set's {len(ds)} examples")
    pick = torch.randperm(len(ds), generator=torch.Generator().manual_seed(args.seed))[: args.n]
    if model.joint is not None:
        return report_joint(args, model, ds, ds.x[pick])
    x = ds.x[pick] if model.codec is None else torch.cat([model.encode(ds.x[pick][i:i + 500]).cpu()
                                                          for i in range(0, args.n, 500)])
    result = data_nll(denoiser, x, None if labels is None else labels[pick], method=args.method,
                      terms=args.terms, variance=args.variance, probe=args.probe, rtol=args.rtol, atol=args.atol,
                      batch_size=args.batch_size, seed=args.seed, continuous=model.codec is not None)
    result = {"checkpoint": str(args.checkpoint), "data_set": ds.name, **result}
    if model.codec is not None:
        result["space"] = "latent"
        print(f"in the latent space of {model.record['latent'].get('autoencoder')}: bits per latent dimension "
              f"({list(model.shape)}), not the data's bits/dim")
    for key, what in (("bound", "variational bound"), ("ode", "probability-flow ODE")):
        if f"{key}_bpd" in result:
            print(f"{what:22} {result[f'{key}_bpd']:.4f} +- {result[f'{key}_ci95']:.4f} bits/dim (95%, n={args.n})")
    return write_figures(args.json, result)


def write_figures(path, result: dict) -> int:
    """The figures as JSON at `path` (--json), if given."""
    if path:
        from ..images import atomic_save
        atomic_save(path, lambda p: Path(p).write_text(json.dumps(result, indent=2)))
        print(f"figures: {path}")
    return 0


def check_joint_flags(args) -> None:
    """One-line errors for what the bits/dim of an LSGM model (its ELBO; Vahdat et al. 2021) does not take."""
    if args.method == "ode":
        raise ValueError("--method: an LSGM model's likelihood is its variational bound through the VAE (the latent "
                         "ODE gives log p(z0), not log p(x)); use --method bound")
    for flag, value in (("--terms", args.terms), ("--variance", args.variance)):
        if value is not None:
            raise ValueError(f"{flag}: applies to a discrete process's bound; an LSGM model's bound integrates its "
                             f"prior's score matching over t (remove {flag})")


def report_joint(args, model, ds, x) -> int:
    """`denoisekit nll` of an LSGM model: -ELBO in bits per data dimension, with its three terms."""
    from ..likelihood import joint_nll
    result = {"checkpoint": str(args.checkpoint), "data_set": ds.name,
              **joint_nll(model.joint, x, batch_size=args.batch_size, seed=args.seed)}
    for key, what in (("bound", "variational bound"), ("rec", "  decoder -log p(x|z0)"),
                      ("neg_entropy", "  -H(q(z0|x))"), ("cross_entropy", "  CE(q || prior)")):
        print(f"{what:22} {result[f'{key}_bpd']:.4f} +- {result[f'{key}_ci95']:.4f} bits/dim (95%, n={args.n})")
    return write_figures(args.json, result)


def cmd_info(args) -> int:
    """`denoisekit info`: parsed arguments in, exit status out."""
    from ..models import load_model
    from ..train.checkpoint import EMA_WEIGHTS, load_weights
    model = load_model(args.checkpoint, ema=False)  # a run, a checkpoint, or any format an opener reads
    folder = model.folder
    if (folder / EMA_WEIGHTS).exists():
        load_weights(folder, ema=True)  # every file is read, so a damaged one is reported here
    print(json.dumps(model.info(), indent=2))
    return 0


def add_parsers(sub, common) -> None:
    """Register this file's verbs on the command line's subparsers (`common`: the flags every verb shares)."""
    n = sub.add_parser("nll", parents=[common], help="bits/dim of data under a model, by the variational bound and "
                       "by the probability-flow ODE", description="Negative log-likelihood in bits/dim, with a 95% "
                       "confidence interval over the examples (their noise, probes and dequantization). Images are "
                       "8-bit data: the bound ends in a discretized Gaussian decoder, the ODE sees uniformly "
                       "dequantized pixels. Vectors are continuous.")
    n.add_argument("checkpoint", help="a checkpoint folder or a run folder")
    n.add_argument("--data", help="the data set (default: the one the model was trained on)")
    n.add_argument("--n", type=int, default=256, help="examples (a seeded random subset of the data set)")
    n.add_argument("--batch-size", type=int, dest="batch_size", default=64)
    n.add_argument("--method", choices=METHODS, default="both")
    n.add_argument("--terms", type=terms_arg, default=None, metavar="all|K",
                   help="bound terms: all T (the default), or L_0 and K strata of the rest, one random step each")
    n.add_argument("--variance", choices=VARIANCES,
                   help="the reverse steps' variance in the bound (default: learned if the model has it, else "
                   "beta_tilde)")
    n.add_argument("--probe", choices=PROBES, default="rademacher",
                   help="ODE divergence: Hutchinson with Rademacher or Gaussian probes, or the exact trace (small d)")
    n.add_argument("--rtol", type=float, default=1e-5)
    n.add_argument("--atol", type=float, default=1e-5)
    n.add_argument("--seed", type=int, default=0)
    n.add_argument("--json", help="also write the figures as JSON")
    n.add_argument("--raw", action="store_true", help="use the raw weights instead of the EMA weights")
    n.add_argument("--device", default="cpu")
    n.set_defaults(func=cmd_nll)

    i = sub.add_parser("info", parents=[common], help="what a checkpoint holds")
    i.add_argument("checkpoint")
    i.set_defaults(func=cmd_info)
