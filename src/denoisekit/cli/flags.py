"""What the verbs share: value parsing, the sampling, guidance and run-config flags, output-path checks."""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import yaml

from ..config import require
from ..guidance.wrappers import CLASSIFIER_FORMS, ClassifierFreeGuidance, ClassifierGuidance, DynamicThresholding
from ..objectives import OBJECTIVES
from ..denoiser import ALL_PREDICTIONS
from ..processes import PROCESSES
from ..samplers import SAMPLERS, SCHEDULES, check_request
from ..vlb import VARIANCES


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


def add_sampling_flags(s) -> None:
    """--sampler, --steps, --schedule and the sampler options; names and choices from the samplers' registry. With none
    of them given, the checkpoint's best recorded sampler (`denoisekit eval --record`) is used, else ddpm, 100 steps."""
    s.add_argument("--sampler", help=f"one of {', '.join(SAMPLERS)} (default: the checkpoint's best recorded by "
                   f"`denoisekit eval --record`, else ddpm)")
    s.add_argument("--steps", type=int, help="sampling steps (network evaluations for one-step-per-evaluation "
                   "samplers; default: the recorded best's, else 100)")
    s.add_argument("--schedule", help=f"step schedule: {', '.join(SCHEDULES)} (default: the sampler's own)")
    s.add_argument("--eta", type=_eta, help="DDIM's eta in [0, 1], or sigma_hat; SDE-DPM-Solver++'s eta")
    s.add_argument("--churn", type=float, help="EDM's S_churn for euler and heun")
    s.add_argument("--variance", choices=VARIANCES,
                   help="DDPM's sigma^2 (default: the model's learned variance if it has one, else beta_tilde)")
    s.add_argument("--opt", action="append", metavar="KEY=VALUE", help="any other sampler option, e.g. order=2")


def add_guidance_flags(s) -> None:
    """Classifier-free guidance, classifier guidance and dynamic thresholding."""
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
    s.add_argument("--clip", metavar="RUN", help="a noised CLIP from 'denoisekit train-clip': CLIP guidance of a text "
                   "model toward its prompts (GLIDE)")
    s.add_argument("--clip-scale", type=float, dest="clip_scale", default=1.0, metavar="S",
                   help="CLIP guidance scale s: eps - s sigma grad (f(x_t, t) . g(c)) (default 1)")
    s.add_argument("--classifier-form", dest="classifier_form", choices=CLASSIFIER_FORMS, default="score",
                   help="score: eps - s sigma grad log p(y|x_t), any sampler (default); mean: mu + s Sigma grad, "
                   "ancestral ddpm only")


def _pair(text: str) -> tuple:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI (two noise levels), got {text!r}") from None
    return lo, hi


def class_arg(text: str):
    """--class: a class index or 'all' (argparse type)."""
    if text == "all":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a class index or 'all', got {text!r}") from None


def guiding(args) -> bool:
    """Whether any guidance flag (--guidance, --classifier, --clip) was given."""
    return any(getattr(args, k, None) is not None for k in ("guidance", "classifier", "clip"))


def check_guidance_args(args) -> None:
    """The guidance flags' values, before any work (what needs the checkpoint is checked in `guided`)."""
    if args.guidance is not None:
        ClassifierFreeGuidance(None, args.guidance, rescale=args.guidance_rescale or 0.0,
                               interval=args.guidance_interval)
    elif args.guidance_rescale is not None or args.guidance_interval is not None:
        raise ValueError("--guidance-rescale/--guidance-interval: they modify --guidance W, which is not given")
    if args.threshold is not None:
        DynamicThresholding(None, args.threshold)
    if args.schedule == "auto" and (guiding(args) or args.threshold is not None):
        raise ValueError("--schedule: 'auto' is fitted to and cached for the unguided model; with guidance or "
                         "thresholding name a fixed schedule (e.g. karras or logsnr)")
    if getattr(args, "clip", None) is not None:
        require(math.isfinite(args.clip_scale), "--clip-scale", "a finite number", args.clip_scale)
    if args.classifier is not None:
        ClassifierGuidance(None, None, args.classifier_scale, args.classifier_form)
        if args.classifier_form == "mean" and args.sampler != "ddpm":
            raise ValueError(f"--classifier-form: 'mean' shifts the ancestral DDPM posterior mean; use --sampler "
                             f"ddpm, or --classifier-form score with {args.sampler}")


def guided(args, model, prompts=None):
    """The loaded model's denoiser wrapped as the guidance flags ask (CLIP guidance toward `prompts`, one per
    sample), and the number of classes labels may name."""
    from ..models import open_classifier, open_clip
    classifier = None if args.classifier is None else open_classifier(args.classifier, device=args.device)
    clip = None if getattr(args, "clip", None) is None else open_clip(args.clip, device=args.device)
    return model.guided(w=args.guidance, rescale=args.guidance_rescale, interval=args.guidance_interval,
                        classifier=classifier, classifier_scale=args.classifier_scale,
                        classifier_form=args.classifier_form, threshold=args.threshold, clip=clip,
                        clip_scale=args.clip_scale, prompts=prompts)


def _eta(text: str):
    return text if text == "sigma_hat" else float(text)


def check_sampling_args(args, checkpoint=None) -> dict:
    """Validate sampler, schedule, steps and options before any work; returns the options. With no sampling flag at
    all, `checkpoint`'s best recorded sampler fills them in (said on one line), else its fallback (ddpm for 100 steps;
    a consistency model's f in 2 steps), which also fills in what the flags leave out."""
    from ..samplers.recorded import best_recorded, fallback_for
    options = sampling_options(args)
    fallback = fallback_for(checkpoint)
    if args.sampler is None and args.steps is None and args.schedule is None and not options:
        best = best_recorded(checkpoint) if checkpoint is not None else None
        chosen = best or fallback
        args.sampler, args.steps, args.schedule = chosen["sampler"], chosen["steps"], chosen["schedule"]
        options = {**chosen["options"]}
        if best is not None:
            print(f"sampler: {best['sampler']}, {best['steps']} steps{', ' + best['schedule'] if best['schedule'] else ''}"
                  f"{' ' + str(best['options']) if best['options'] else ''}: this checkpoint's best recorded "
                  f"({best['metric']} {best['score']:.4g} with {best['n']} samples; --sampler to choose another)")
    if args.sampler is None and args.schedule is None:  # the fallback sampler with its own schedule
        args.schedule = fallback["schedule"]
    args.sampler = args.sampler or fallback["sampler"]
    args.steps = fallback["steps"] if args.steps is None else args.steps
    if args.steps < 1:
        raise ValueError(f"--steps: expected a positive number of steps, got {args.steps}")
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


def run_config(args, cls=None):
    """The run config (a `cls`, RunConfig by default) from --config, the named flags and --set, checked whole; and
    the run folder."""
    from ..recipes import RunConfig
    cls = cls or RunConfig
    raw: dict = read_run_config(args.config) if args.config else {}
    for flag, key in (("data", "data"), ("steps", "train.steps"), ("batch_size", "train.batch_size"),
                      ("lr", "train.lr"), ("seed", "train.seed"), ("device", "train.device"),
                      ("prediction", "prediction"), ("image_size", "image_size"), ("objective", "objective"),
                      ("process", "process.kind"), ("latent", "latent"),
                      ("super_resolution", "super_resolution.low_size"), ("text_encoder", "text.encoder")):
        if getattr(args, flag, None) is not None:
            _set_path(raw, key, getattr(args, flag))
    for item in args.set or []:
        if "=" not in item:
            raise ValueError(f"--set: expected KEY=VALUE (e.g. train.lr=1e-3), got {item!r}")
        k, v = item.split("=", 1)
        _set_path(raw, k.strip(), _parse_value(v))
    rc = cls.from_dict(raw)
    out = Path(args.out or f"runs/{Path(rc.data).stem}{getattr(args, 'out_suffix', '')}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out: {out} is a file; expected a run folder")
    return rc, out


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


def terms_arg(text: str):
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


def add_run_flags(t, diffusion: bool = True) -> None:
    """The flags of the commands that train into a run folder from a run config (`diffusion`: also the process,
    objective and prediction)."""
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
    t.add_argument("--image-size", type=int, dest="image_size")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="any config field, e.g. net.channels=48")
    t.add_argument("--no-resume", action="store_true", help="start afresh: remove the run folder's previous "
                   "checkpoints, logs and samples (nothing else) before training")
    if not diffusion:
        return
    t.add_argument("--latent", metavar="AE_RUN", help="diffuse in the latents of a 'denoisekit train-autoencoder' "
                   "run (latent diffusion, Rombach et al. 2022); samples are decoded through it")
    t.add_argument("--super-resolution", type=int, dest="super_resolution", metavar="LOW_SIZE", help="train a "
                   "cascade's super-resolution stage: the data's images conditioned on their LOW_SIZE versions, with "
                   "noise-conditioning augmentation (Ho et al. 2021; super_resolution.aug_max, .aug_level)")
    t.add_argument("--text-encoder", dest="text_encoder", metavar="PATH", help="a frozen pre-trained text encoder for "
                   "a text_cond model: a 'denoisekit train-clip' run, or a local transformers CLIP text / T5 folder "
                   "(text.encoder; loaded with local_files_only)")
    t.add_argument("--prediction", choices=ALL_PREDICTIONS, help="what the network predicts; mixed: CLD's mixed score (the residual to the velocity noise of Gaussian data)")
    t.add_argument("--process", choices=list(PROCESSES), help="the noise process: DDPM's "
                   "discrete VP (the default), NCSN's geometric noise ladder (Song & Ermon 2019), the score SDEs' "
                   "VP, sub-VP or VE on t in [0, 1] (Song et al. 2021), or flow matching's straight path x_t = "
                   "(1 - t) x0 + t eps (process.shift: Esser et al. 2024's time shift), or critically-damped Langevin "
                   "diffusion over (x, v) (cld: Dockhorn et al. 2022; process.beta, .mass_inv, .gamma, .damping)")
    t.add_argument("--objective", choices=list(OBJECTIVES), help="L_simple (the "
                   "default); L_hybrid = L_simple + 0.001 L_vlb with learned variance, or L_vlb with importance-"
                   "sampled t (Nichol & Dhariwal 2021); denoising (dsm), sliced (ssm) or explicit (esm) score "
                   "matching with lambda = sigma^2; flow matching (flow: the velocity eps - x0 on the flow "
                   "process, loss.t_sampling uniform, logit_normal or mode), hybrid score matching (hsm: CLD's "
                   "velocity noise, loss.weighting eps or likelihood), or LSGM (lsgm: the --latent autoencoder and "
                   "a score prior on its latents trained end to end on the VAE's bound, Vahdat et al. 2021; "
                   "loss.prior_weighting un, ll or re, loss.vae_every, latent_init pretrained or scratch, mixed_score)")



def check_new_folder(flag: str, path) -> None:
    """A one-line error unless `path` is free or an empty folder (a command's new output folder)."""
    from pathlib import Path
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ValueError(f"{flag}: {path} already exists and is not an empty folder; name a new one")
