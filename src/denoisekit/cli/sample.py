"""`denoisekit sample` and `denoisekit eval`."""
from __future__ import annotations

import json
import os
from pathlib import Path

from .flags import (add_guidance_flags, add_sampling_flags, check_guidance_args, check_output, check_sampling_args,
                    class_arg, guided, guiding)


def cmd_sample(args) -> int:
    """`denoisekit sample`: parsed arguments in, exit status out."""
    import contextlib

    import numpy as np
    import torch

    from ..images import PICTURE_FORMATS, atomic_save, save_gif, save_picture, save_row_strip
    from ..models import load_model
    from ..samplers import check_request, generate
    from ..samplers.graphs import cuda_graphs
    from ..utils import check_device
    if args.cuda_graphs and (args.cascade is not None or not str(args.device).startswith("cuda")):
        raise ValueError("--cuda-graphs: records GPU kernels; it needs --device cuda, got --device "
                         f"{args.device}" if args.cascade is None else
                         "--cuda-graphs: records one model's kernels; it does not apply to --cascade")
    if args.cascade is not None or args.checkpoint is None:
        from .cascade import cmd_sample_cascade
        return cmd_sample_cascade(args)
    if args.aug_level is not None:
        raise ValueError("--aug-level: the augmentation level of a super-resolution stage's input; it applies with "
                         "--cascade BASE_RUN SR_RUN")
    options = check_sampling_args(args, _checkpoint_folder(args.checkpoint))
    for flag, path, suffixes in (("--out", args.out, PICTURE_FORMATS), ("--strip", args.strip, PICTURE_FORMATS),
                                 ("--gif", args.gif, [".gif"]), ("--npz", args.npz, [".npz"])):
        check_output(flag, path, suffixes)
    check_device(args.device, "--device")
    if args.scale is not None and args.scale < 1:
        raise ValueError(f"--scale: expected a positive integer, got {args.scale}")
    check_guidance_args(args)
    prompts = read_prompts(args)
    model = load_model(args.checkpoint, ema=not args.raw, device=args.device)
    model.require_single_stage("checkpoint")
    if args.prior is not None or isinstance(model.record.get("unclip"), dict):
        return _sample_unclip(args, prompts, options)
    check_request(args.sampler, args.schedule, options, where="--schedule", process=model.process,
                  steps=args.steps)  # now that the process is known: its times and the sampler's own check
    shape = model.shape
    denoiser, num_classes = guided(args, model, prompts_per_sample(args, prompts))
    labels, nrow = prompt_conditioning(args, model, prompts) if prompts or model.text else \
        class_labels(args, num_classes)
    frames, every = [], max(1, args.steps // 20)
    wants_frames = args.gif or args.strip

    def callback(i, t, x, pred):
        if wants_frames and (i % every == 0 or i == args.steps - 1):
            frames.append(model.process.data_part(x).cpu())  # a state (x, v): its data part

    stats: dict = {}
    times = _auto_times(args, model.denoiser, shape, options)
    graphs = cuda_graphs(model.denoiser) if args.cuda_graphs else contextlib.nullcontext()
    with torch.no_grad(), graphs:
        x = generate(denoiser, args.n, shape, seed=args.seed, steps=args.steps, sampler=args.sampler,
                     schedule=args.schedule, labels=labels, callback=callback, progress=True, stats=stats,
                     times=times, **options)
    print(f"sampler {args.sampler}: {stats['nfe']} network evaluations"
          f"{' in the latent space, decoded by its first stage' if model.codec is not None else ''}")
    x, frames = model.decode(x), [model.decode(f) for f in frames]
    is_image = len(model.data_shape) == 3
    scale = args.scale or (2 if is_image and model.data_shape[-1] <= 32 else 1)
    out = save_picture(x, args.out, nrow=nrow, scale=scale)
    print(f"samples: {out}{(' (one row per prompt)' if prompts else ' (one row per class)') if nrow else ''}")
    if args.npz:
        arr = x.cpu().numpy()
        atomic_save(args.npz, lambda p: np.savez(p, x=arr))
        print(f"arrays: {args.npz}")
    if args.gif:
        k = min(16, args.n) if is_image else args.n
        print(f"reverse process GIF: {save_gif([f[:k] for f in frames], args.gif, scale=scale)}")
    if args.strip:
        k = min(8, args.n) if is_image else args.n
        cols = [f[:k] for f in frames[:: max(1, len(frames) // 10)]] + [frames[-1][:k]]
        print(f"reverse process strip: {save_row_strip(cols, args.strip, scale=scale)}")
    return 0


def _sample_unclip(args, prompts: list, options: dict) -> int:
    """DALL-E 2's text to image: the prior's image embeddings of the prompts, decoded; one row per prompt."""
    import numpy as np

    from ..images import atomic_save, save_picture
    from ..recipes.unclip import UnCLIP
    if args.prior is None:
        raise ValueError(f"checkpoint: {args.checkpoint} is an unCLIP stage; sample text to image as `denoisekit sample "
                         f"DECODER --prior PRIOR --prompt TEXT`")
    if not prompts:
        raise ValueError("--prior: unCLIP draws from captions; give --prompt TEXT or --prompts FILE")
    if args.gif or args.strip or args.classifier or args.clip or args.threshold is not None:
        raise ValueError("--prior: unCLIP sampling takes --guidance (on both stages) and the sampler flags; drop "
                         "--gif/--strip/--classifier/--clip/--threshold")
    u = UnCLIP.open(args.checkpoint, args.prior, device=args.device)
    each = prompts_per_sample(args, prompts)
    x = u.text_to_image(each, seed=args.seed, w_prior=args.guidance, w_decoder=args.guidance, steps=args.steps,
                        sampler=args.sampler, schedule=args.schedule, **options)
    nrow = len(each) // len(prompts)
    print(f"samples: {save_picture(x, args.out, nrow=nrow, scale=args.scale or 2)} (unCLIP: prior, then decoder; one "
          f"row per prompt)")
    if args.npz:
        arr = x.cpu().numpy()
        atomic_save(args.npz, lambda p: np.savez(p, x=arr))
        print(f"arrays: {args.npz}")
    return 0


def data_captions(data, n: int):
    """(n captions spread over a captioned data set, the labels of their images or None) to evaluate a text model
    with; for data without captions, the empty caption (unconditional samples) and no labels."""
    from ..data import load_dataset
    from ..text import CaptionedDataset
    ds = load_dataset(data) if data and not Path(os.path.expanduser(data)).is_dir() else None
    if not isinstance(ds, CaptionedDataset):
        return [""] * n, None
    import torch
    idx = torch.arange(n) * len(ds) // n
    return [ds.captions[i] for i in idx.tolist()], (ds.y[idx] if ds.y is not None else None)


def read_prompts(args) -> list:
    """The captions of --prompt (each given) and --prompts FILE (one a line), checked before any work."""
    prompts = list(args.prompt or [])
    if args.prompts is not None:
        path = Path(os.path.expanduser(args.prompts))
        if not path.is_file():
            raise ValueError(f"--prompts: {args.prompts}: no such file (one prompt a line)")
        try:
            lines = [line.strip() for line in path.read_text().splitlines()]
        except (UnicodeDecodeError, OSError) as e:
            raise ValueError(f"--prompts: {args.prompts} is not a readable text file ({type(e).__name__})") from None
        if not any(lines):
            raise ValueError(f"--prompts: {args.prompts} holds no prompt (one a line)")
        prompts += [line for line in lines if line]
    if prompts and args.label is not None:
        raise ValueError("--class: a text model is asked by --prompt; give one or the other")
    return prompts


def prompts_per_sample(args, prompts: list) -> list:
    """Each prompt repeated for its grid row (args.n rounded to whole rows), as prompt_conditioning lays them out."""
    if not prompts:
        return prompts
    nrow = max(1, args.n // len(prompts))
    return [p for p in prompts for _ in range(nrow)]


def prompt_conditioning(args, model, prompts):
    """(the captions' conditioning, one row per prompt, the grid's row length): args.n rounded to whole rows; no
    prompt asks a text model for unconditional samples (the empty caption)."""
    if not prompts:
        if guiding(args):
            flag = "--guidance" if args.guidance is not None else "--classifier"
            raise ValueError(f"{flag}: guides toward a caption; give --prompt TEXT or --prompts FILE")
        return model.prompts([""] * args.n), None
    each = prompts_per_sample(args, prompts)
    args.n = len(each)
    return model.prompts(each), len(each) // len(prompts)


def class_labels(args, num_classes):
    """(the labels --class asks for, one row per class under 'all' or guidance; the grid's row length or None), with
    args.n rounded to whole rows."""
    import torch
    if args.label == "all" or (args.label is None and num_classes and guiding(args)):
        if not num_classes:
            raise ValueError("--class: this model was trained without class labels (and no --classifier is given)")
        nrow = max(1, args.n // num_classes)  # one row per class
        args.n = nrow * num_classes
        return torch.arange(num_classes, device=args.device).repeat_interleave(nrow), nrow
    if args.label is not None:
        if not num_classes:
            raise ValueError("--class: this model was trained without class labels (and no --classifier is given)")
        if not 0 <= args.label < num_classes:
            raise ValueError(f"--class: expected a class in 0..{num_classes - 1}, got {args.label}")
        return torch.full((args.n,), args.label, dtype=torch.long, device=args.device), None
    return None, None


def _auto_times(args, denoiser, shape, options):
    """For --schedule auto: the schedule fitted to this checkpoint, cached in its folder (auto_schedules.json)."""
    if args.schedule != "auto":
        return None
    from ..samplers import auto_schedule
    from ..train import find_checkpoint
    print(f"fitting an automatic {args.steps}-step schedule for {args.sampler} to this model (cached)")
    return auto_schedule(denoiser, args.sampler, args.steps, shape, options=options,
                         cache_file=find_checkpoint(args.checkpoint) / "auto_schedules.json")


def _checkpoint_folder(path):
    """The checkpoint folder `path` names (itself, or a run's latest), or None when it is not one."""
    from ..train import find_checkpoint
    try:
        return find_checkpoint(path)
    except FileNotFoundError:
        return None


def check_stream(stream: bool, data) -> None:
    """A one-line error for --stream with data that is not an image folder (or folder of .tar shards)."""
    if stream and not (data and Path(os.path.expanduser(data)).is_dir()):
        raise ValueError(f"--stream: reads an image folder (or a folder of .tar shards) in batches; {data!r} is not "
                         f"one (remove --stream)")


def cmd_eval(args) -> int:
    """`denoisekit eval`: parsed arguments in, exit status out."""
    from ..data import load_dataset
    from ..eval import Evaluator, format_report, load_samples
    from ..eval.inception import HOW_TO
    from ..images import atomic_save
    from ..utils import check_device
    path = Path(args.samples)
    if not path.exists():
        raise FileNotFoundError(f"samples: no such file or folder {path}")
    if args.k < 1:
        raise ValueError(f"--k: expected a positive number of neighbours, got {args.k}")
    check_output("--json", args.json, [".json"])
    check_device(args.device, "--device")
    data = args.data
    folder = _checkpoint_folder(path) if path.is_dir() else None
    if args.record and folder is None:
        raise ValueError("--record: records a sampler's score in the checkpoint it samples; give a checkpoint or run "
                         "folder, not sample files")
    if args.record and (args.raw or guiding(args)):
        raise ValueError("--record: only plain sampling of the EMA weights is recorded (the default for `denoisekit "
                         "sample`); drop --raw and the guidance flags")
    if folder is not None:
        from ..models import load_model
        from ..samplers import balanced_labels, generate
        options = check_sampling_args(args, folder)
        if args.n <= args.k:
            raise ValueError(f"--n: precision/recall with --k {args.k} needs more than {args.k} samples, got {args.n}")
        check_guidance_args(args)
        model = load_model(path, ema=not args.raw, device=args.device)
        model.require_single_stage("samples")
        if isinstance(model.record.get("unclip"), dict):
            raise ValueError(f"samples: {model.folder} is an unCLIP stage; write samples with `denoisekit sample "
                             f"DECODER --prior PRIOR --prompts FILE --npz S.npz` and evaluate S.npz")
        data = data or model.data_name
        check_stream(args.stream, data)
        prompts, digits = data_captions(data, args.n) if model.text else (None, None)
        denoiser, num_classes = guided(args, model, prompts)
        labels = model.prompts(prompts) if prompts else balanced_labels(args.n, num_classes, args.device)
        samples = model.decode(generate(denoiser, args.n, model.shape, seed=args.seed, steps=args.steps,
                                        sampler=args.sampler, schedule=args.schedule, labels=labels, progress=True,
                                        times=_auto_times(args, model.denoiser, model.shape, options),
                                        **options)).cpu()
        labels = digits if model.text else labels  # a text model's samples are scored against their captions' labels
    else:
        check_stream(args.stream, data)
        samples, labels = load_samples(path), None
    if not data:
        raise ValueError("--data: name the data set the samples should be compared with (e.g. --data mnist)")
    if args.stream:  # the reference classifier and features read the folder in batches
        from ..streaming import stream_image_folder
        ds = stream_image_folder(Path(os.path.expanduser(data)), args.image_size)
    else:
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
    if args.record:
        from ..samplers.recorded import METRICS, record_score
        metric = next((m for m in METRICS if m in metrics), None)
        if metric is None:
            raise ValueError(f"--record: the evaluation gave none of {', '.join(METRICS)} to rank samplers by")
        entry = {"sampler": args.sampler, "steps": args.steps, "schedule": args.schedule, "options": options,
                 "n": args.n, "seed": args.seed, "metric": metric, "score": float(metrics[metric]), "data": ds.name}
        print(f"recorded: {record_score(folder, entry)} (denoisekit sample uses the best recorded sampler)")
    return 0


def add_parsers(sub, common) -> None:
    """Register this file's verbs on the command line's subparsers (`common`: the flags every verb shares)."""
    s = sub.add_parser("sample", parents=[common], help="draw samples from a checkpoint into a PNG grid (and GIF / "
                       "npz)")
    s.add_argument("checkpoint", nargs="?", help="a checkpoint folder or a run folder (or --cascade)")
    s.add_argument("--cascade", nargs=2, metavar=("BASE_RUN", "SR_RUN"), help="cascaded generation: samples of the "
                   "low-resolution BASE_RUN completed by the super-resolution stage SR_RUN (sampler flags and "
                   "--threshold apply to both stages, guidance to the base)")
    s.add_argument("--aug-level", type=float, dest="aug_level", metavar="U", help="with --cascade: the noise level "
                   "in [0, 1] of the super-resolution stage's input (default: the one it was trained to use)")
    s.add_argument("--n", type=int, default=64)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--prompt", action="append", metavar="TEXT", help="a caption for a text-conditional model "
                   "(repeat for several: one grid row each)")
    s.add_argument("--prompts", metavar="FILE", help="captions, one a line (one grid row each)")
    s.add_argument("--prior", metavar="PRIOR_RUN", help="unCLIP (DALL-E 2): the checkpoint is a decoder, PRIOR_RUN its "
                   "prior over CLIP image embeddings; text to image through both")
    add_sampling_flags(s)
    s.add_argument("--class", "--label", dest="label", type=class_arg, metavar="K|all",
                   help="the class to draw (a class-conditional or classifier-guided model); 'all': one row per class "
                   "(the default when guiding)")
    add_guidance_flags(s)
    s.add_argument("--out", default="samples.png")
    s.add_argument("--gif", help="also write a GIF of the reverse process")
    s.add_argument("--strip", help="also write a PNG strip of the reverse process (with --cascade: of the stages, "
                   "written by default beside --out)")
    s.add_argument("--npz", help="also write the samples as arrays")
    s.add_argument("--scale", type=int, help="enlarge images this many times in the grid")
    s.add_argument("--raw", action="store_true", help="use the raw weights instead of the EMA weights")
    s.add_argument("--device", default="cpu")
    s.add_argument("--cuda-graphs", action="store_true", dest="cuda_graphs", help="replay the network from CUDA "
                   "graphs (one launch a step: faster at small --n on a GPU)")
    s.set_defaults(func=cmd_sample)

    e = sub.add_parser("eval", parents=[common], help="score samples against a data set (Frechet distance, "
                       "precision/recall, ...)")
    e.add_argument("samples", help="a .npz/.npy of samples, a folder of images, or a checkpoint/run folder to sample")
    e.add_argument("--data", help="the data set to compare with (default: the one a checkpoint was trained on)")
    e.add_argument("--image-size", type=int, dest="image_size", help="resize the data set's images to this size")
    e.add_argument("--stream", action="store_true", help="read the data (an image folder or .tar shards) in batches "
                   "instead of loading it whole")
    e.add_argument("--inception-weights", dest="inception_weights",
                   help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth, for the standard Inception FID")
    e.add_argument("--k", type=int, default=3, help="neighbours for the precision/recall manifolds")
    e.add_argument("--json", help="also write the metrics as JSON")
    e.add_argument("--cache-dir", dest="cache_dir", help="where reference classifiers are cached "
                   "(default $DENOISEKIT_CACHE or ~/.cache/denoisekit)")
    e.add_argument("--n", type=int, default=1000, help="samples to draw from a checkpoint")
    e.add_argument("--seed", type=int, default=0)
    add_sampling_flags(e)
    e.add_argument("--record", action="store_true", help="record this sampler's Frechet distance in the checkpoint, "
                   "so `denoisekit sample` with no sampler flags uses the best recorded")
    add_guidance_flags(e)
    e.add_argument("--raw", action="store_true", help="use the raw weights instead of the EMA weights")
    e.add_argument("--device", default="cpu")
    e.set_defaults(func=cmd_eval)
