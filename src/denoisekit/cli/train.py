"""`denoisekit train`, `denoisekit train-classifier`, `denoisekit train-clip` and `denoisekit train-autoencoder`."""
from __future__ import annotations

from pathlib import Path

from .flags import DEFAULT_RUN, add_run_flags, run_config


def cmd_train(args) -> int:
    """`denoisekit train`: parsed arguments in, exit status out."""
    from ..recipes import prepare_run, train_run
    rc, out = run_config(args)
    if not args.config and not args.data:
        print(f"no --config or --data given: the default run, {DEFAULT_RUN} (about 20 minutes on a laptop CPU; "
              f"Ctrl-C saves a checkpoint and stops)")
    run = prepare_run(rc)  # data loaded and network built: every error so far left the folder untouched
    return _train_or_check(args, out, run.summary(), lambda: train_run(rc, out, not args.no_resume, run=run))


def cmd_train_classifier(args) -> int:
    """`denoisekit train-classifier`: parsed arguments in, exit status out."""
    from ..recipes.classifier import prepare_classifier, train_classifier_run
    rc, out = run_config(args)
    prepared = prepare_classifier(rc)
    ds = prepared[0]
    return _train_or_check(args, out, f"a noisy classifier on {ds.name!r} ({len(ds)} labelled images)",
                           lambda: train_classifier_run(rc, out, not args.no_resume, prepared=prepared))


def cmd_train_clip(args) -> int:
    """`denoisekit train-clip`: parsed arguments in, exit status out."""
    from ..recipes.clip import prepare_clip, train_clip_run
    args.set = ["text_cond=true", *(args.set or [])]  # the captions' tokens are what a CLIP trains on
    rc, out = run_config(args)
    prepared = prepare_clip(rc)
    ds = prepared[0]
    return _train_or_check(args, out, f"a noised CLIP on {ds.name!r} ({len(ds)} captioned images)",
                           lambda: train_clip_run(rc, out, not args.no_resume, prepared=prepared))


def cmd_train_autoencoder(args) -> int:
    """`denoisekit train-autoencoder`: parsed arguments in, exit status out."""
    from ..recipes.autoencoder import AutoencoderConfig, prepare_autoencoder, train_autoencoder_run
    ac, out = run_config(args, AutoencoderConfig)
    prepared = prepare_autoencoder(ac)
    ds, model = prepared[0], prepared[1]
    return _train_or_check(args, out, f"a {type(model).__name__} on {ds.name!r} ({len(ds)} x {list(ds.x.shape[1:])}),"
                           f" latent {list(model.latent_shape(ds.x.shape[1:]))}",
                           lambda: train_autoencoder_run(ac, out, not args.no_resume, prepared=prepared))


def _train_or_check(args, out: Path, summary: str, train) -> int:
    """After validation: stop there under --check, else train into the run folder."""
    if args.check:
        print(f"config valid: {summary}")
        return 0
    train()
    print(f"run folder: {out}")
    return 0


def add_parsers(sub, common) -> None:
    """Register this file's verbs on the command line's subparsers (`common`: the flags every verb shares)."""
    t = sub.add_parser("train", parents=[common], help="train a model; the run folder holds config, checkpoints, "
                       "logs and samples", description=f"Train a model. With neither --config nor --data it trains "
                       f"the default run: {DEFAULT_RUN}.")
    add_run_flags(t)
    t.set_defaults(func=cmd_train)

    c = sub.add_parser("train-classifier", parents=[common], help="train a noisy classifier p(y | x_t, t) for "
                       "classifier guidance (same run folder and checkpoints as train)",
                       description="Train a noisy classifier on labelled images: the U-Net's encoder half with the "
                       "time embedding and a pooled head, on x_t at all noise levels. Its net section takes the "
                       "U-Net's settings (channels, channel_mult, num_res_blocks, attention_levels, ...).")
    add_run_flags(c)
    c.set_defaults(func=cmd_train_classifier, out_suffix="-classifier")

    p = sub.add_parser("train-clip", parents=[common], help="train a noised CLIP (image encoder of x_t and t, text "
                       "encoder) for CLIP guidance of a text model (GLIDE)",
                       description="Train GLIDE's noised CLIP on captioned images (mnist-captions, or a folder with "
                       "NAME.txt captions): the contrastive loss at all noise levels. net: the image encoder's U-Net "
                       "settings (channels, channel_mult, num_res_blocks, attention_levels, patch_size); text: the "
                       "tokenizer's and text encoder's sizes (text.dim is the shared embedding's width). Writes "
                       "retrieval.json: caption retrieval accuracy by noise level.")
    add_run_flags(p)
    p.set_defaults(func=cmd_train_clip, out_suffix="-clip")

    a = sub.add_parser("train-autoencoder", parents=[common], help="train the first stage of latent diffusion: a "
                       "KL-regularised autoencoder (then: denoisekit train --latent RUN)",
                       description="Train a KL-regularised autoencoder (Rombach et al. 2022): reconstruction (l1 or "
                       "l2, learned scale) + loss.kl_weight x KL. net: latent_channels, channels, channel_mult (its "
                       "length - 1 halvings: [1, 2, 2] takes MNIST to 7x7), num_res_blocks; latent_norm: global (one "
                       "scale factor 1/std) or channel. Writes report.json and reconstructions.png.")
    add_run_flags(a, diffusion=False)
    a.set_defaults(func=cmd_train_autoencoder, out_suffix="-autoencoder")
