"""The command line: `denoisekit train | sample | eval | info`."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml


def _parse_value(text: str, flag: str = "--set") -> Any:
    """A --set value: numbers as numbers (also '1e-3', which YAML 1.1 reads as a string), else YAML."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f"{flag}: value {text!r} is not valid YAML ({getattr(e, 'problem', None) or 'unreadable'}); quote "
                         f"text that holds YAML symbols") from None


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
        options[k] = _parse_value(v, "--opt")
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
    s.add_argument("--variance", choices=["beta_tilde", "beta", "learned"],
                   help="DDPM's sigma^2 (default: the model's learned variance if it has one, else beta_tilde)")
    s.add_argument("--opt", action="append", metavar="KEY=VALUE", help="any other sampler option, e.g. order=2")


def _add_guidance_flags(s) -> None:
    s.add_argument("--guidance", type=float, metavar="W", help="classifier-free guidance scale w: eps-hat = (1 + w) "
                   "eps(x, y) - w eps(x) (a class-conditional model trained with label dropout)")
    s.add_argument("--guidance-rescale", type=float, dest="guidance_rescale", metavar="PHI",
                   help="CFG rescale phi in [0, 1] (Lin et al. 2023)")
    s.add_argument("--guidance-interval", type=_pair, dest="guidance_interval", metavar="LO,HI",
                   help="apply w only at noise levels sigma/alpha in (LO, HI]")
    s.add_argument("--threshold", type=float, metavar="P", help="Imagen's dynamic thresholding at percentile P "
                   "(e.g. 0.995)")
    s.add_argument("--classifier", metavar="RUN", help="a noisy classifier from 'denoisekit train-classifier', for "
                   "classifier guidance")
    s.add_argument("--classifier-scale", type=float, dest="classifier_scale", default=1.0, metavar="S",
                   help="classifier guidance scale s (default 1)")
    s.add_argument("--classifier-form", dest="classifier_form", choices=["score", "mean"], default="score",
                   help="score: eps - s sigma grad log p(y|x_t), any sampler (default); mean: mu + s Sigma grad, "
                   "ancestral ddpm only")


def _pair(text: str) -> tuple:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI (two noise levels), got {text!r}") from None
    return lo, hi


def _class(text: str):
    if text == "all":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a class index or 'all', got {text!r}") from None


def _guiding(args) -> bool:
    return getattr(args, "guidance", None) is not None or getattr(args, "classifier", None) is not None


def check_guidance_args(args) -> None:
    """The guidance flags' values, before any work (what needs the checkpoint is checked in `guided`)."""
    from .guidance import ClassifierFreeGuidance, ClassifierGuidance, DynamicThresholding
    if args.guidance is not None:
        ClassifierFreeGuidance(None, args.guidance, rescale=args.guidance_rescale or 0.0,
                               interval=args.guidance_interval)
    elif args.guidance_rescale is not None or args.guidance_interval is not None:
        raise ValueError("--guidance-rescale/--guidance-interval: they modify --guidance W, which is not given")
    if args.threshold is not None:
        DynamicThresholding(None, args.threshold)
    if args.schedule == "auto" and (_guiding(args) or args.threshold is not None):
        raise ValueError("--schedule: 'auto' is fitted to and cached for the unguided model; with guidance or "
                         "thresholding name a fixed schedule (e.g. karras or logsnr)")
    if args.classifier is not None:
        ClassifierGuidance(None, None, args.classifier_scale, args.classifier_form)
        if args.classifier_form == "mean" and args.sampler != "ddpm":
            raise ValueError(f"--classifier-form: 'mean' shifts the ancestral DDPM posterior mean; use --sampler "
                             f"ddpm, or --classifier-form score with {args.sampler}")


def guided(args, denoiser, config: dict, shape: tuple):
    """The denoiser wrapped as the guidance flags ask, and the number of classes labels may name (None: no labels)."""
    from .guidance import ClassifierFreeGuidance, ClassifierGuidance, DynamicThresholding
    run = config.get("run") or {}
    num_classes = config["data"].get("num_classes") if run.get("class_cond") else None
    if args.guidance is not None:
        if not num_classes:
            raise ValueError("--guidance: classifier-free guidance needs a class-conditional model (class_cond: "
                             "true); this one was trained without labels")
        if not (config.get("loss") or {}).get("p_uncond"):
            raise ValueError("--guidance: this model was trained without label dropout (loss.p_uncond = 0), so it "
                             "has no unconditional branch to guide with")
        denoiser = ClassifierFreeGuidance(denoiser, args.guidance, rescale=args.guidance_rescale or 0.0,
                                          interval=args.guidance_interval)
    if args.classifier is not None:
        from .recipe_classifier import load_classifier
        classifier, cconf = load_classifier(args.classifier, device=args.device)
        if tuple((cconf.get("data") or {}).get("shape") or ()) != tuple(shape):
            raise ValueError(f"--classifier: it was trained on data of shape {(cconf.get('data') or {}).get('shape')}, "
                             f"but the model makes {list(shape)}")
        k = cconf["data"].get("num_classes")
        if num_classes and k != num_classes:
            raise ValueError(f"--classifier: it knows {k} classes, the model {num_classes}")
        num_classes = num_classes or k
        denoiser = ClassifierGuidance(denoiser, classifier.log_prob, args.classifier_scale, args.classifier_form)
    if args.threshold is not None:
        denoiser = DynamicThresholding(denoiser, args.threshold)
    return denoiser, num_classes


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


def read_run_config(path) -> dict:
    """A run-config file as a mapping, with one-line errors for a missing file or malformed YAML."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--config: no such file {p}" if not p.exists() else f"--config: {p} is a folder")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ValueError(f"--config: {p} is not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None
    except UnicodeDecodeError:
        raise ValueError(f"--config: {p} is not a text file") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"--config: {p} should hold a mapping of settings (data: ..., train: ...), got "
                         f"{type(raw).__name__}")
    return raw


def _set_path(d: dict, dotted: str, value: Any) -> None:
    """--set a.b.c=value into the nested config."""
    keys = dotted.split(".")
    if not all(k.strip() for k in keys):
        raise ValueError(f"--set: {dotted!r} is not a dotted config key (e.g. train.lr)")
    for i, k in enumerate(keys[:-1]):
        if d.get(k) is None:
            d[k] = {}
        d = d[k]
        if not isinstance(d, dict):
            raise ValueError(f"--set: {'.'.join(keys[:i + 1])} is {d!r}, not a section with keys")
    d[keys[-1]] = value


DEFAULT_RUN = "MNIST-5k ('mnist'), the default U-Net, 1000 steps of batch 64, into runs/mnist"


def run_config(args):
    """The run config from --config, the named flags and --set, checked whole; and the run folder."""
    from .recipe import RunConfig
    raw: dict = read_run_config(args.config) if args.config else {}
    for flag, key in (("data", "data"), ("steps", "train.steps"), ("batch_size", "train.batch_size"),
                      ("lr", "train.lr"), ("seed", "train.seed"), ("device", "train.device"),
                      ("prediction", "prediction"), ("image_size", "image_size"), ("objective", "objective"),
                      ("process", "process.kind")):
        if getattr(args, flag) is not None:
            _set_path(raw, key, getattr(args, flag))
    for item in args.set or []:
        if "=" not in item:
            raise ValueError(f"--set: expected KEY=VALUE (e.g. train.lr=1e-3), got {item!r}")
        k, v = item.split("=", 1)
        _set_path(raw, k.strip(), _parse_value(v))
    rc = RunConfig.from_dict(raw)
    out = Path(args.out or f"runs/{Path(rc.data).stem}{getattr(args, 'out_suffix', '')}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out: {out} is a file; expected a run folder")
    return rc, out


def cmd_train(args) -> int:
    from .recipe import prepare_run, train_run
    rc, out = run_config(args)
    if not args.config and not args.data:
        print(f"no --config or --data given: the default run, {DEFAULT_RUN} (about 20 minutes on a laptop CPU; "
              f"Ctrl-C saves a checkpoint and stops)")
    run = prepare_run(rc)  # data loaded and network built: every error so far left the folder untouched
    return _train_or_check(args, out, run.summary(), lambda: train_run(rc, out, not args.no_resume, run=run))


def cmd_train_classifier(args) -> int:
    from .recipe_classifier import prepare_classifier, train_classifier_run
    rc, out = run_config(args)
    prepared = prepare_classifier(rc)
    ds = prepared[0]
    return _train_or_check(args, out, f"a noisy classifier on {ds.name!r} ({len(ds)} labelled images)",
                           lambda: train_classifier_run(rc, out, not args.no_resume, prepared=prepared))


def _train_or_check(args, out: Path, summary: str, train) -> int:
    """After validation: stop there under --check, else train into the run folder."""
    if args.check:
        print(f"config valid: {summary}")
        return 0
    train()
    print(f"run folder: {out}")
    return 0


def check_output(flag: str, path, suffixes=None) -> None:
    """An output path checked before any work: not a folder, under folders (not files), with a suffix it can have."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{flag}: {p} is a folder; expected a file path")
    for parent in p.parents:
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"{flag}: {parent} is a file, so {p} cannot be written")
    if suffixes and p.suffix.lower() not in suffixes:
        raise ValueError(f"{flag}: expected a file name ending in {', '.join(suffixes)}, got {p.name!r}")


def _data_shape(config: dict, where) -> tuple:
    data = config.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("shape"), list):
        raise ValueError(f"checkpoint: {where} records no data shape; it was not made by 'denoisekit train'")
    return tuple(data["shape"])


def cmd_sample(args) -> int:
    import numpy as np
    import torch

    from .images import PICTURE_FORMATS, save_gif, save_picture, save_row_strip
    from .recipe import generate, load_denoiser
    from .samplers import check_request
    from .utils import check_device
    options = _check_sampling_args(args)
    for flag, path, suffixes in (("--out", args.out, PICTURE_FORMATS), ("--strip", args.strip, PICTURE_FORMATS),
                                 ("--gif", args.gif, [".gif"]), ("--npz", args.npz, [".npz"])):
        check_output(flag, path, suffixes)
    check_device(args.device, "--device")
    if args.scale is not None and args.scale < 1:
        raise ValueError(f"--scale: expected a positive integer, got {args.scale}")
    check_guidance_args(args)
    denoiser, config = load_denoiser(args.checkpoint, ema=not args.raw, device=args.device)
    check_request(args.sampler, args.schedule, options, where="--schedule", process=denoiser.process,
                  steps=args.steps)  # now that the process is known: its times and the sampler's own check
    shape = _data_shape(config, args.checkpoint)
    denoiser, num_classes = guided(args, denoiser, config, shape)
    labels, nrow = None, None
    if args.label == "all" or (args.label is None and num_classes and _guiding(args)):
        if not num_classes:
            raise ValueError("--class: this model was trained without class labels (and no --classifier is given)")
        nrow = max(1, args.n // num_classes)  # one row per class
        args.n = nrow * num_classes
        labels = torch.arange(num_classes, device=args.device).repeat_interleave(nrow)
    elif args.label is not None:
        if not num_classes:
            raise ValueError("--class: this model was trained without class labels (and no --classifier is given)")
        if not 0 <= args.label < num_classes:
            raise ValueError(f"--class: expected a class in 0..{num_classes - 1}, got {args.label}")
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
    out = save_picture(x, args.out, nrow=nrow, scale=scale)
    print(f"samples: {out}{' (one row per class)' if nrow else ''}")
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
    from .utils import check_device
    path = Path(args.samples)
    if not path.exists():
        raise FileNotFoundError(f"samples: no such file or folder {path}")
    if args.k < 1:
        raise ValueError(f"--k: expected a positive number of neighbours, got {args.k}")
    check_output("--json", args.json, [".json"])
    check_device(args.device, "--device")
    data = args.data
    if path.is_dir() and _is_checkpoint(path):
        from .recipe import balanced_labels, generate, load_denoiser
        options = _check_sampling_args(args)
        if args.n <= args.k:
            raise ValueError(f"--n: precision/recall with --k {args.k} needs more than {args.k} samples, got {args.n}")
        check_guidance_args(args)
        denoiser, config = load_denoiser(path, ema=not args.raw, device=args.device)
        data = data or (config.get("run") or {}).get("data")
        shape = _data_shape(config, path)
        denoiser, num_classes = guided(args, denoiser, config, shape)
        labels = balanced_labels(args.n, num_classes, args.device)
        samples = generate(denoiser, args.n, shape, seed=args.seed, steps=args.steps, sampler=args.sampler,
                           schedule=args.schedule, labels=labels, progress=True,
                           times=_auto_times(args, denoiser, shape, options), **options).cpu()
    else:
        samples, labels = load_samples(path), None
    if not data:
        raise ValueError("--data: name the data set the samples should be compared with (e.g. --data mnist)")
    ds = load_dataset(data, image_size=args.image_size)
    evaluator = Evaluator(ds, device=args.device, inception_weights=args.inception_weights, k=args.k,
                          cache_root=args.cache_dir)
    labels = labels.cpu() if labels is not None and ds.is_image and ds.y is not None else None
    metrics = {"samples": str(path), **evaluator.evaluate(samples, labels)}
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
    from .utils import check_device
    check_device(args.device, "--device")
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
    from .images import PICTURE_FORMATS
    check_output("--out", args.out, [".npz"])
    check_output("--reconstruction", args.reconstruction, PICTURE_FORMATS)
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
    from .images import PICTURE_FORMATS, save_picture
    from .samplers import ddim_interpolate
    from .steps import sampling_times
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


def _terms(text: str):
    """--terms: 'all' or a positive number of strata."""
    if text == "all":
        return None
    try:
        k = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'all' or a positive number of strata, got {text!r}") from None
    if k < 1:
        raise argparse.ArgumentTypeError(f"expected 'all' or a positive number of strata, got {text!r}")
    return k


def cmd_nll(args) -> int:
    import torch

    from .data import load_dataset
    from .images import atomic_save
    from .likelihood import data_nll
    from .recipe import load_denoiser
    from .utils import check_device
    from .vlb import resolve_variance
    for flag, value, least in (("--n", args.n, 2), ("--batch-size", args.batch_size, 1), ("--seed", args.seed, 0)):
        if value < least:
            raise ValueError(f"{flag}: expected an integer >= {least}, got {value}")
    for flag in ("rtol", "atol"):
        if not getattr(args, flag) > 0:
            raise ValueError(f"--{flag}: expected a positive tolerance, got {getattr(args, flag)}")
    check_output("--json", args.json, [".json"])
    check_device(args.device, "--device")
    denoiser, config = load_denoiser(args.checkpoint, ema=not args.raw, device=args.device)
    if args.method != "ode":
        resolve_variance(denoiser, args.variance)
        T = len(denoiser.process.trained_times())
        if args.terms is not None and args.terms > T - 1:
            raise ValueError(f"--terms: the model has T = {T} steps, so at most {T - 1} strata besides L_0; got "
                             f"{args.terms}")
    name = args.data or (config.get("run") or {}).get("data")
    if not name:
        raise ValueError("--data: name the data set (this checkpoint records none)")
    ds = load_dataset(name)
    shape = tuple((config.get("data") or {}).get("shape") or ())
    if shape and tuple(ds.x.shape[1:]) != shape:
        raise ValueError(f"--data: {name!r} holds {list(ds.x.shape[1:])} data; the model was trained on {list(shape)}")
    labels = None
    if (config.get("run") or {}).get("class_cond"):
        if ds.y is None:
            raise ValueError(f"--data: the model is class-conditional and {name!r} has no labels")
        labels = ds.y
    if args.n > len(ds):
        raise ValueError(f"--n: {args.n} is more than the data set's {len(ds)} examples")
    pick = torch.randperm(len(ds), generator=torch.Generator().manual_seed(args.seed))[: args.n]
    result = data_nll(denoiser, ds.x[pick], None if labels is None else labels[pick], method=args.method,
                      terms=args.terms, variance=args.variance, probe=args.probe, rtol=args.rtol, atol=args.atol,
                      batch_size=args.batch_size, seed=args.seed)
    result = {"checkpoint": str(args.checkpoint), "data_set": ds.name, **result}
    for key, what in (("bound", "variational bound"), ("ode", "probability-flow ODE")):
        if f"{key}_bpd" in result:
            print(f"{what:22} {result[f'{key}_bpd']:.4f} +- {result[f'{key}_ci95']:.4f} bits/dim (95%, n={args.n})")
    if args.json:
        atomic_save(args.json, lambda p: Path(p).write_text(json.dumps(result, indent=2)))
        print(f"figures: {args.json}")
    return 0


def cmd_info(args) -> int:
    from .recipe import load_denoiser
    from .train import find_checkpoint
    from .train.checkpoint import load_state
    from .train.checkpoint import EMA_WEIGHTS, load_weights
    folder = find_checkpoint(args.checkpoint)
    denoiser, config = load_denoiser(folder, ema=False)
    if (folder / EMA_WEIGHTS).exists():
        load_weights(folder, ema=True)  # every file is read, so a damaged one is reported here
    state = load_state(folder) or {}
    n_params = sum(p.numel() for p in denoiser.parameters())
    info = {"checkpoint": str(folder), "step": state.get("step"), "parameters": n_params,
            "has_ema": (folder / "ema.safetensors").exists(), "data": config.get("data"),
            "prediction": config["model"].get("prediction"), "process": config["model"].get("process"),
            "network": config["model"].get("net"), "loss": config.get("loss"), "train": config.get("train")}
    print(json.dumps(info, indent=2))
    return 0


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `denoisekit VERB: error: ...` and a pointer to --help, no usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "(no message)"


def _warn_one_line(command: str):
    """warnings.showwarning writing `denoisekit VERB: warning: ...` on one line."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"denoisekit {command}: warning: {_one_line(message)}", file=file or sys.stderr)
    return show


def main(argv=None) -> int:
    """The command line, with one error boundary: a library error is one line on stderr (--debug: the traceback)."""
    p = _parser()
    args = p.parse_args(argv)
    if getattr(args, "n", 1) is not None and getattr(args, "n", 1) < 1:
        p.error("--n: expected a positive number of samples")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = _warn_one_line(args.command)
        return _run(args)


def _run(args) -> int:
    """The error boundary around one command."""
    from .train.trainer import TrainingInterrupted
    try:
        return args.func(args)
    except TrainingInterrupted as e:
        print(f"denoisekit {args.command}: {e}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"denoisekit {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as e:  # the library's errors (and files that cannot be read or written)
        if args.debug:
            raise
        print(f"denoisekit {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:  # a bug: still one line, and a way to see it
        if args.debug:
            raise
        print(f"denoisekit {args.command}: internal error: {type(e).__name__}: {_one_line(e)[:300]} (rerun with "
              f"--debug for the traceback, and please report it)", file=sys.stderr)
        return 1


def _add_run_flags(t) -> None:
    """The flags of the commands that train into a run folder from a run config."""
    t.add_argument("--config", help="YAML run configuration (flags override it)")
    t.add_argument("--data", help="mnist (the default), digits, swiss_roll, moons, 8gaussians, checkerboard, or a "
                   "folder/.npz/idx path")
    t.add_argument("--out", help="run folder (default runs/DATA)")
    t.add_argument("--check", action="store_true", help="validate the config, load the data and build the network, "
                   "then exit without training or writing anything")
    t.add_argument("--steps", type=int)
    t.add_argument("--batch-size", type=int, dest="batch_size")
    t.add_argument("--lr", type=float)
    t.add_argument("--seed", type=int)
    t.add_argument("--device")
    t.add_argument("--prediction", choices=["eps", "x0", "v", "score", "edm"])
    t.add_argument("--process", choices=["ddpm", "ncsn", "vp", "subvp", "ve"], help="the noise process: DDPM's "
                   "discrete VP (the default), NCSN's geometric noise ladder (Song & Ermon 2019), or the score SDEs' "
                   "VP, sub-VP or VE on t in [0, 1] (Song et al. 2021)")
    t.add_argument("--objective", choices=["simple", "hybrid", "vlb", "dsm", "ssm", "esm"], help="L_simple (the "
                   "default); L_hybrid = L_simple + 0.001 L_vlb with learned variance, or L_vlb with importance-"
                   "sampled t (Nichol & Dhariwal 2021); denoising (dsm), sliced (ssm) or explicit (esm) score "
                   "matching with lambda = sigma^2")
    t.add_argument("--image-size", type=int, dest="image_size")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="any config field, e.g. net.channels=48")
    t.add_argument("--no-resume", action="store_true", help="start afresh: remove the run folder's previous "
                   "checkpoints, logs and samples (nothing else) before training")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    p = Parser(prog="denoisekit", description="Denoising-diffusion models: train, sample, inspect.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    t = sub.add_parser("train", parents=[common], help="train a model; the run folder holds config, checkpoints, "
                       "logs and samples", description=f"Train a model. With neither --config nor --data it trains "
                       f"the default run: {DEFAULT_RUN}.")
    _add_run_flags(t)
    t.set_defaults(func=cmd_train)

    c = sub.add_parser("train-classifier", parents=[common], help="train a noisy classifier p(y | x_t, t) for "
                       "classifier guidance (same run folder and checkpoints as train)",
                       description="Train a noisy classifier on labelled images: the U-Net's encoder half with the "
                       "time embedding and a pooled head, on x_t at all noise levels. Its net section takes the "
                       "U-Net's settings (channels, channel_mult, num_res_blocks, attention_levels, ...).")
    _add_run_flags(c)
    c.set_defaults(func=cmd_train_classifier, out_suffix="-classifier")

    s = sub.add_parser("sample", parents=[common], help="draw samples from a checkpoint into a PNG grid (and GIF / npz)")
    s.add_argument("checkpoint", help="a checkpoint folder or a run folder")
    s.add_argument("--n", type=int, default=64)
    s.add_argument("--seed", type=int, default=0)
    _add_sampling_flags(s)
    s.add_argument("--class", "--label", dest="label", type=_class, metavar="K|all",
                   help="the class to draw (a class-conditional or classifier-guided model); 'all': one row per class "
                   "(the default when guiding)")
    _add_guidance_flags(s)
    s.add_argument("--out", default="samples.png")
    s.add_argument("--gif", help="also write a GIF of the reverse process")
    s.add_argument("--strip", help="also write a PNG strip of the reverse process")
    s.add_argument("--npz", help="also write the samples as arrays")
    s.add_argument("--scale", type=int, help="enlarge images this many times in the grid")
    s.add_argument("--raw", action="store_true", help="use the raw weights instead of the EMA weights")
    s.add_argument("--device", default="cpu")
    s.set_defaults(func=cmd_sample)

    e = sub.add_parser("eval", parents=[common], help="score samples against a data set (Frechet distance, precision/recall, ...)")
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
    _add_guidance_flags(e)
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

    v = sub.add_parser("invert", parents=[common], help="encode images to noise x_T with deterministic DDIM (Song et al. 2021, 4.3)")
    add_ddim_flags(v)
    v.add_argument("images", nargs="+", help="image files (converted and resized to the model's images)")
    v.add_argument("--out", default="inverted.npz", help="the encoded noises as an .npz (x_T, times)")
    v.add_argument("--reconstruction", help="also decode the noises again and write input and result as a PNG")
    v.set_defaults(func=cmd_invert)

    q = sub.add_parser("interpolate", parents=[common], help="slerp between two images' DDIM-encoded noises and decode each frame")
    add_ddim_flags(q)
    q.add_argument("a", help="first image file")
    q.add_argument("b", help="second image file")
    q.add_argument("--frames", type=int, default=8)
    q.add_argument("--out", default="interpolation.png")
    q.set_defaults(func=cmd_interpolate)

    n = sub.add_parser("nll", parents=[common], help="bits/dim of data under a model, by the variational bound and "
                       "by the probability-flow ODE", description="Negative log-likelihood in bits/dim, with a 95% "
                       "confidence interval over the examples (their noise, probes and dequantization). Images are "
                       "8-bit data: the bound ends in a discretized Gaussian decoder, the ODE sees uniformly "
                       "dequantized pixels. Vectors are continuous.")
    n.add_argument("checkpoint", help="a checkpoint folder or a run folder")
    n.add_argument("--data", help="the data set (default: the one the model was trained on)")
    n.add_argument("--n", type=int, default=256, help="examples (a seeded random subset of the data set)")
    n.add_argument("--batch-size", type=int, dest="batch_size", default=64)
    n.add_argument("--method", choices=["bound", "ode", "both"], default="both")
    n.add_argument("--terms", type=_terms, default=None, metavar="all|K",
                   help="bound terms: all T (the default), or L_0 and K strata of the rest, one random step each")
    n.add_argument("--variance", choices=["learned", "beta_tilde", "beta"],
                   help="the reverse steps' variance in the bound (default: learned if the model has it, else "
                   "beta_tilde)")
    n.add_argument("--probe", choices=["rademacher", "gaussian", "exact"], default="rademacher",
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

    return p


if __name__ == "__main__":
    sys.exit(main())
