"""The command line: `denoisekit train | sample | eval | info`."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml


def _parse_value(text: str) -> Any:
    """A --set value: numbers as numbers (also '1e-3', which YAML 1.1 reads as a string), else YAML."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return yaml.safe_load(text)


def _set_path(d: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        d = d.setdefault(k, {})
    d[keys[-1]] = value


def sampling_options(args) -> dict:
    """Sampler options from the named flags (--eta, --churn, --variance) and any --opt KEY=VALUE."""
    options = {}
    for flag, key in (("eta", "eta"), ("churn", "s_churn"), ("variance", "variance")):
        if getattr(args, flag, None) is not None:
            options[key] = getattr(args, flag)
    for item in getattr(args, "opt", None) or []:
        if "=" not in item:
            raise ValueError(f"--opt: expected KEY=VALUE (e.g. eta=0.5), got {item!r}")
        k, v = item.split("=", 1)
        options[k] = _parse_value(v)
    return options


def _add_sampling_flags(s, default_steps: int = 100) -> None:
    from .samplers import SAMPLERS
    from .steps import SCHEDULES
    s.add_argument("--sampler", default="ddpm", help=f"one of {', '.join(SAMPLERS)} (default ddpm)")
    s.add_argument("--steps", type=int, default=default_steps, help="sampling steps (network evaluations for "
                   "one-step-per-evaluation samplers)")
    s.add_argument("--schedule", help=f"step schedule: {', '.join(SCHEDULES)} (default: the sampler's own)")
    s.add_argument("--eta", type=_eta, help="DDIM's eta in [0, 1], or sigma_hat; SDE-DPM-Solver++'s eta")
    s.add_argument("--churn", type=float, help="EDM's S_churn for euler and heun")
    s.add_argument("--variance", choices=["beta_tilde", "beta"], help="DDPM's sigma^2 (default beta_tilde)")
    s.add_argument("--opt", action="append", metavar="KEY=VALUE", help="any other sampler option, e.g. order=2")


def _eta(text: str):
    return text if text == "sigma_hat" else float(text)


def _check_sampling_args(args) -> dict:
    """Validate sampler, schedule, steps and options before any work; returns the options."""
    from .samplers import check_request
    if args.steps < 1:
        raise ValueError(f"--steps: expected a positive number of steps, got {args.steps}")
    options = sampling_options(args)
    check_request(args.sampler, args.schedule, options, where="--schedule")
    return options


def cmd_train(args) -> int:
    from .recipe import RunConfig, train_run
    raw: dict = {}
    if args.config:
        p = Path(args.config)
        if not p.exists():
            raise SystemExit(f"--config: no such file {p}")
        raw = yaml.safe_load(p.read_text()) or {}
    for flag, key in (("data", "data"), ("steps", "train.steps"), ("batch_size", "train.batch_size"),
                      ("lr", "train.lr"), ("seed", "train.seed"), ("device", "train.device"),
                      ("prediction", "prediction"), ("image_size", "image_size")):
        if getattr(args, flag) is not None:
            _set_path(raw, key, getattr(args, flag))
    for item in args.set or []:
        if "=" not in item:
            raise SystemExit(f"--set: expected KEY=VALUE (e.g. train.lr=1e-3), got {item!r}")
        k, v = item.split("=", 1)
        _set_path(raw, k, _parse_value(v))
    rc = RunConfig.from_dict(raw)
    out = Path(args.out or f"runs/{Path(rc.data).stem}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "run.yaml").write_text(yaml.safe_dump(rc.as_dict(), sort_keys=False))
    train_run(rc, out, resume=not args.no_resume)
    print(f"run folder: {out}")
    return 0


def cmd_sample(args) -> int:
    import numpy as np
    import torch

    from .images import save_gif, save_picture, save_row_strip
    from .recipe import generate, load_denoiser
    options = _check_sampling_args(args)
    denoiser, config = load_denoiser(args.checkpoint, ema=not args.raw, device=args.device)
    if "data" not in config:
        raise ValueError(f"checkpoint: {args.checkpoint} records no data shape; it was not made by 'denoisekit train'")
    shape = tuple(config["data"]["shape"])
    labels = None
    if args.label is not None:
        if not config["run"].get("class_cond"):
            raise SystemExit("--label: this model was trained without class conditioning")
        labels = torch.full((args.n,), args.label, dtype=torch.long, device=args.device)
    frames, every = [], max(1, args.steps // 20)
    wants_frames = args.gif or args.strip

    def callback(i, t, x, pred):
        if wants_frames and (i % every == 0 or i == args.steps - 1):
            frames.append(x.cpu())

    stats: dict = {}
    times = _auto_times(args, denoiser, shape, options)
    with torch.no_grad():
        x = generate(denoiser, args.n, shape, seed=args.seed, steps=args.steps, sampler=args.sampler,
                     schedule=args.schedule, labels=labels, callback=callback, progress=True, stats=stats,
                     times=times, **options)
    print(f"sampler {args.sampler}: {stats['nfe']} network evaluations")
    is_image = len(shape) == 3
    scale = args.scale or (2 if is_image and shape[-1] <= 32 else 1)
    out = save_picture(x, args.out, scale=scale)
    print(f"samples: {out}")
    if args.npz:
        arr = x.cpu().numpy()
        from .images import atomic_save
        atomic_save(args.npz, lambda p: np.savez(open(p, "wb"), x=arr))
        print(f"arrays: {args.npz}")
    if args.gif:
        k = min(16, args.n) if is_image else args.n
        print(f"reverse process GIF: {save_gif([f[:k] for f in frames], args.gif, scale=scale)}")
    if args.strip:
        k = min(8, args.n) if is_image else args.n
        cols = [f[:k] for f in frames[:: max(1, len(frames) // 10)]] + [frames[-1][:k]]
        print(f"reverse process strip: {save_row_strip(cols, args.strip, scale=scale)}")
    return 0


def _auto_times(args, denoiser, shape, options):
    """For --schedule auto: the schedule fitted to this checkpoint, cached in its folder (auto_schedules.json)."""
    if args.schedule != "auto":
        return None
    from .samplers.auto import auto_schedule
    from .train import find_checkpoint
    print(f"fitting an automatic {args.steps}-step schedule for {args.sampler} to this model (cached)")
    return auto_schedule(denoiser, args.sampler, args.steps, shape, options=options,
                         cache_file=find_checkpoint(args.checkpoint) / "auto_schedules.json")


def _is_checkpoint(path: Path) -> bool:
    from .train import find_checkpoint
    try:
        find_checkpoint(path)
        return True
    except FileNotFoundError:
        return False


def cmd_eval(args) -> int:
    from .data import load_dataset
    from .eval import Evaluator, format_report, load_samples
    from .eval.inception import HOW_TO
    from .images import atomic_save
    path = Path(args.samples)
    if not path.exists():
        raise FileNotFoundError(f"samples: no such file or folder {path}")
    data = args.data
    if path.is_dir() and _is_checkpoint(path):
        from .recipe import balanced_labels, generate, load_denoiser
        options = _check_sampling_args(args)
        denoiser, config = load_denoiser(path, ema=not args.raw, device=args.device)
        data = data or config.get("run", {}).get("data")
        num_classes = config["data"].get("num_classes") if config.get("run", {}).get("class_cond") else None
        labels = balanced_labels(args.n, num_classes, args.device)
        shape = tuple(config["data"]["shape"])
        samples = generate(denoiser, args.n, shape, seed=args.seed, steps=args.steps, sampler=args.sampler,
                           schedule=args.schedule, labels=labels, progress=True,
                           times=_auto_times(args, denoiser, shape, options), **options).cpu()
    else:
        samples = load_samples(path)
    if not data:
        raise ValueError("--data: name the data set the samples should be compared with (e.g. --data mnist)")
    ds = load_dataset(data, image_size=args.image_size)
    evaluator = Evaluator(ds, device=args.device, inception_weights=args.inception_weights, k=args.k,
                          cache_root=args.cache_dir)
    metrics = {"samples": str(path), **evaluator.evaluate(samples)}
    print(format_report(metrics))
    if ds.is_image and "inception_fid" not in metrics:
        print(f"(no Inception FID: {HOW_TO})")
    if args.json:
        atomic_save(args.json, lambda p: Path(p).write_text(json.dumps(metrics, indent=2)))
        print(f"metrics: {args.json}")
    return 0


def _image_model(args):
    """A trained image model and its (C, H, W), for the commands that take image files."""
    from .recipe import load_denoiser
    if args.steps < 1:
        raise ValueError(f"--steps: expected a positive number of steps, got {args.steps}")
    if args.iters < 1:
        raise ValueError(f"--iters: expected a positive number of fixed-point iterations, got {args.iters}")
    denoiser, config = load_denoiser(args.checkpoint, ema=not args.raw, device=args.device)
    shape = tuple(config.get("data", {}).get("shape", ()))
    if len(shape) != 3:
        raise ValueError(f"checkpoint: {args.checkpoint} is not an image model (data shape {list(shape)})")
    return denoiser, shape


def cmd_invert(args) -> int:
    import numpy as np
    import torch

    from .data import load_image_file
    from .images import atomic_save, save_picture
    from .samplers import ddim_invert, ddim_sample
    from .steps import sampling_times
    for name in ("out", "reconstruction"):
        target = getattr(args, name)
        if target and Path(target).is_dir():
            raise ValueError(f"--{name}: {target} is a folder; expected a file path")
    denoiser, shape = _image_model(args)
    x0 = torch.cat([load_image_file(p, shape) for p in args.images]).to(args.device)
    times = sampling_times(denoiser.process, args.steps, args.schedule)
    z = ddim_invert(denoiser, x0, times.flip(0), iters=args.iters, progress=True)
    arr = z.cpu().numpy()
    atomic_save(args.out, lambda p: np.savez(open(p, "wb"), x_T=arr, times=times.numpy()))
    print(f"encoded noise x_T: {args.out}")
    if args.reconstruction:
        x = ddim_sample(denoiser, z, times, progress=True)
        err = float((x - x0).norm() / x0.norm())
        save_picture(torch.cat([x0, x]), args.reconstruction, nrow=len(x0), scale=2 if shape[-1] <= 32 else 1)
        print(f"reconstruction (top: input, bottom: decoded): {args.reconstruction}; relative error {err:.2e}")
    return 0


def cmd_interpolate(args) -> int:
    from .data import load_image_file
    from .images import save_picture
    from .samplers import ddim_interpolate
    from .steps import sampling_times
    if args.frames < 2:
        raise ValueError(f"--frames: expected at least 2 frames, got {args.frames}")
    if Path(args.out).is_dir():
        raise ValueError(f"--out: {args.out} is a folder; expected a file path")
    denoiser, shape = _image_model(args)
    x_a, x_b = (load_image_file(p, shape).to(args.device) for p in (args.a, args.b))
    times = sampling_times(denoiser.process, args.steps, args.schedule)
    frames = ddim_interpolate(denoiser, x_a, x_b, times, args.frames, iters=args.iters, progress=True)
    out = save_picture(frames[:, 0], args.out, nrow=args.frames, scale=2 if shape[-1] <= 32 else 1)
    print(f"interpolation ({args.frames} frames, slerp between the DDIM-encoded noises): {out}")
    return 0


def cmd_info(args) -> int:
    from .recipe import load_denoiser
    from .train import find_checkpoint
    from .train.checkpoint import load_state
    folder = find_checkpoint(args.checkpoint)
    denoiser, config = load_denoiser(folder, ema=False)
    state = load_state(folder) or {}
    n_params = sum(p.numel() for p in denoiser.parameters())
    info = {"checkpoint": str(folder), "step": state.get("step"), "parameters": n_params,
            "has_ema": (folder / "ema.safetensors").exists(), "data": config.get("data"),
            "prediction": config["model"].get("prediction"), "process": config["model"].get("process"),
            "network": config["model"].get("net"), "loss": config.get("loss"), "train": config.get("train")}
    print(json.dumps(info, indent=2))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="denoisekit", description="Denoising-diffusion models: train, sample, inspect.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model; the run folder holds config, checkpoints, logs and samples")
    t.add_argument("--config", help="YAML run configuration (flags override it)")
    t.add_argument("--data", help="mnist, digits, swiss_roll, moons, 8gaussians, checkerboard, or a folder/.npz/idx path")
    t.add_argument("--out", help="run folder (default runs/DATA)")
    t.add_argument("--steps", type=int)
    t.add_argument("--batch-size", type=int, dest="batch_size")
    t.add_argument("--lr", type=float)
    t.add_argument("--seed", type=int)
    t.add_argument("--device")
    t.add_argument("--prediction", choices=["eps", "x0", "v", "score", "edm"])
    t.add_argument("--image-size", type=int, dest="image_size")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="any config field, e.g. net.channels=48")
    t.add_argument("--no-resume", action="store_true", help="start afresh even if the run folder has checkpoints")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="draw samples from a checkpoint into a PNG grid (and GIF / npz)")
    s.add_argument("checkpoint", help="a checkpoint folder or a run folder")
    s.add_argument("--n", type=int, default=64)
    s.add_argument("--seed", type=int, default=0)
    _add_sampling_flags(s)
    s.add_argument("--label", type=int, help="class label for a class-conditional model")
    s.add_argument("--out", default="samples.png")
    s.add_argument("--gif", help="also write a GIF of the reverse process")
    s.add_argument("--strip", help="also write a PNG strip of the reverse process")
    s.add_argument("--npz", help="also write the samples as arrays")
    s.add_argument("--scale", type=int, help="enlarge images this many times in the grid")
    s.add_argument("--raw", action="store_true", help="use the raw weights instead of the EMA weights")
    s.add_argument("--device", default="cpu")
    s.set_defaults(func=cmd_sample)

    e = sub.add_parser("eval", help="score samples against a data set (Frechet distance, precision/recall, ...)")
    e.add_argument("samples", help="a .npz/.npy of samples, a folder of images, or a checkpoint/run folder to sample")
    e.add_argument("--data", help="the data set to compare with (default: the one a checkpoint was trained on)")
    e.add_argument("--image-size", type=int, dest="image_size", help="resize the data set's images to this size")
    e.add_argument("--inception-weights", dest="inception_weights",
                   help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth, for the standard Inception FID")
    e.add_argument("--k", type=int, default=3, help="neighbours for the precision/recall manifolds")
    e.add_argument("--json", help="also write the metrics as JSON")
    e.add_argument("--cache-dir", dest="cache_dir", help="where reference classifiers are cached "
                   "(default $DENOISEKIT_CACHE or ~/.cache/denoisekit)")
    e.add_argument("--n", type=int, default=1000, help="samples to draw from a checkpoint")
    e.add_argument("--seed", type=int, default=0)
    _add_sampling_flags(e)
    e.add_argument("--raw", action="store_true", help="use the raw weights instead of the EMA weights")
    e.add_argument("--device", default="cpu")
    e.set_defaults(func=cmd_eval)

    def add_ddim_flags(c):
        c.add_argument("checkpoint", help="a checkpoint folder or a run folder of an image model")
        c.add_argument("--steps", type=int, default=100, help="DDIM steps (default 100)")
        c.add_argument("--schedule", default="uniform", choices=["uniform", "leading", "trailing", "quadratic",
                                                                 "logsnr", "karras"])
        c.add_argument("--iters", type=int, default=3, help="fixed-point iterations per inversion step (default 3)")
        c.add_argument("--raw", action="store_true", help="use the raw weights instead of the EMA weights")
        c.add_argument("--device", default="cpu")

    v = sub.add_parser("invert", help="encode images to noise x_T with deterministic DDIM (Song et al. 2021, 4.3)")
    add_ddim_flags(v)
    v.add_argument("images", nargs="+", help="image files (converted and resized to the model's images)")
    v.add_argument("--out", default="inverted.npz", help="the encoded noises as an .npz (x_T, times)")
    v.add_argument("--reconstruction", help="also decode the noises again and write input and result as a PNG")
    v.set_defaults(func=cmd_invert)

    q = sub.add_parser("interpolate", help="slerp between two images' DDIM-encoded noises and decode each frame")
    add_ddim_flags(q)
    q.add_argument("a", help="first image file")
    q.add_argument("b", help="second image file")
    q.add_argument("--frames", type=int, default=8)
    q.add_argument("--out", default="interpolation.png")
    q.set_defaults(func=cmd_interpolate)

    i = sub.add_parser("info", help="what a checkpoint holds")
    i.add_argument("checkpoint")
    i.set_defaults(func=cmd_info)

    args = p.parse_args(argv)
    if getattr(args, "n", 1) is not None and getattr(args, "n", 1) < 1:
        p.error("--n: expected a positive number of samples")
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"denoisekit {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
