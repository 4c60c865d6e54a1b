"""unCLIP (DALL-E 2) at small scale, measured (issue 23): a prior over the noised CLIP's image embeddings and a decoder,
against the directly text-conditioned model of benchmarks/text_mnist.py.

The CLIP is text_mnist's (runs/text_mnist/clip, trained there if missing); the prior is an MLP on the 64-d image
embeddings x 8 given the captions' text embeddings (x0-prediction, as the paper), `--prior-steps`; the decoder the demo's
U-Net given each image's embedding, `--decoder-steps`; together about the direct model's training minutes (`--direct`,
text_mnist's run; its minutes are summed from its metrics log, batch 32). Scores, 20 NFE of dpmpp_2m a stage, guidance w on both
stages:
- variations: `--n-var` training images, 4 decodings of each one's embedding with new noise: how often a variation
  shows its source's digit (reference classifier) and each attribute's bin (the captions' measurers);
- text to image: prompt fidelity on text_mnist's 60 prompts and Frechet distance of `--n` samples asked with training
  captions, prior + decoder beside the direct model, at each w in `--weights`.
Pictures: docs/figures/unclip.png (rows: a source | its variations; interpolations between two images' embeddings
with fixed noise; a text diff "a thin seven" -> "a thick seven" from a thin seven's embedding). Claims, said either way:
variations keep the digit >= 90% of the time; prior + decoder's best digit fidelity within 0.05 of the direct
model's. Writes benchmarks/results/unclip_mnist.json. Run it alone.
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import demo_config, train_missing, verdict, write_result  # noqa: E402
from text_mnist import clip_config  # noqa: E402

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "figures"
SAMPLER, NFE = "dpmpp_2m", 20


def stage_config(clip: str, stage: str, steps: int) -> dict:
    """The unclip stage's run config: the prior an MLP on the embeddings, the decoder the demo's U-Net."""
    cfg = demo_config({"data": "mnist-captions", "unclip": {"clip": clip, "stage": stage},
                       "train": {"steps": steps, "progress": False, "ema_profiles": [], "sample_every": 0,
                                 "checkpoint_every": 1000}})
    cfg.pop("sample", None)
    if stage == "prior":
        cfg.update(prediction="x0", net={"hidden": 256, "depth": 4})
        cfg["train"] = {**cfg["train"], "batch_size": 128}
    return cfg


def direct_minutes(run: Path):
    """The direct model's training minutes from its metrics log (steps / images per second x batch), or None."""
    try:
        with open(run / "metrics.csv") as f:
            rows = list(csv.DictReader(f))
        steps = [0] + [int(r["step"]) for r in rows]
        return sum((steps[i + 1] - steps[i]) * 32 / float(r["images_per_s"]) for i, r in enumerate(rows)) / 60
    except (OSError, KeyError, ValueError):
        return None


def claims(var: dict, rows: list) -> list:
    out = [(f"variations show their source's digit {var['digit']:.3f} of the time; goal >= 0.90", var["digit"] >= 0.9)]
    best = {m: max(r["digit"] for r in rows if r["model"] == m) for m in ("unclip", "direct")}
    out.append((f"best digit fidelity: prior + decoder {best['unclip']:.3f}, direct {best['direct']:.3f}; goal within "
                f"0.05", best["unclip"] >= best["direct"] - 0.05))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default=str(ROOT / "runs" / "unclip_mnist"), help="where the stages go (finished runs "
                   "are scored again without training)")
    p.add_argument("--direct", default=str(ROOT / "runs" / "text_mnist"), help="the directly text-conditioned run")
    p.add_argument("--prior-steps", type=int, default=3000, dest="prior_steps")
    p.add_argument("--decoder-steps", type=int, default=4000, dest="decoder_steps")
    p.add_argument("--weights", default="1,3", help="comma-separated guidance weights w (both stages)")
    p.add_argument("--per-prompt", type=int, default=5, dest="per_prompt")
    p.add_argument("--n", type=int, default=1000, help="samples per Frechet distance")
    p.add_argument("--n-var", type=int, default=100, dest="n_var", help="source images of variations")
    args = p.parse_args()
    try:
        weights = [float(v) for v in args.weights.split(",")]
    except ValueError:
        p.error(f"--weights: expected comma-separated numbers, got {args.weights!r}")
    for flag, value, least in (("--prior-steps", args.prior_steps, 1), ("--decoder-steps", args.decoder_steps, 1),
                               ("--per-prompt", args.per_prompt, 1), ("--n", args.n, 10), ("--n-var", args.n_var, 1)):
        if value < least:
            p.error(f"{flag}: expected an integer >= {least}, got {value}")

    from denoisekit.data import load_dataset
    from denoisekit.eval import Evaluator
    from denoisekit.images import save_row_strip
    from denoisekit.models import load_model
    from denoisekit.recipes import RunConfig, train_run
    from denoisekit.recipes.clip import train_clip_run
    from denoisekit.recipes.unclip import UnCLIP, slerp_embeddings, text_diff
    from denoisekit.samplers import generate
    from denoisekit.text import ATTRIBUTES, Bins
    from denoisekit.text.fidelity import attribute_prompts, prompt_fidelity
    work, direct_run = Path(args.work), Path(args.direct)
    clip = direct_run / "clip"
    minutes = train_missing([
        ("clip", clip, lambda: train_clip_run(RunConfig.from_dict(clip_config(1500)), clip, resume=True)),
        ("prior", work / "prior", lambda: train_run(RunConfig.from_dict(stage_config(str(clip), "prior",
                                                                                     args.prior_steps)),
                                                    work / "prior")),
        ("decoder", work / "decoder", lambda: train_run(RunConfig.from_dict(stage_config(str(clip), "decoder",
                                                                                         args.decoder_steps)),
                                                        work / "decoder"))])
    minutes["direct"] = direct_minutes(direct_run)
    u = UnCLIP.open(work / "decoder", work / "prior")
    direct = load_model(direct_run)
    bins = Bins.from_dict(direct.record["text"]["bins"])
    data = load_dataset("mnist-captions")
    evaluator = Evaluator(load_dataset("mnist"), progress=False)
    how = dict(steps=NFE, sampler=SAMPLER)

    def digits(x):
        return evaluator.classifier.features_and_logits(x)[1].argmax(1)

    # variations: each source's embedding decoded 4 times with new noise (w 1 on the decoder)
    pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(4))[:args.n_var]
    src = data.x[pick]
    with torch.no_grad():
        z = u.embed(src)
        x_var = u.decode(z.repeat_interleave(4, 0), seed=7, w=1.0, **how)
    d_src, d_var = digits(src).repeat_interleave(4), digits(x_var)
    a_src, a_var = bins.attributes(src, digits(src).numpy()), bins.attributes(x_var, d_src.numpy())
    var = {"digit": float((d_src == d_var).double().mean()),
           **{a: float((torch.as_tensor(a_src[a]).repeat_interleave(4) == torch.as_tensor(a_var[a])).double().mean())
              for a in ATTRIBUTES}}
    print("variations keep: " + ", ".join(f"{k} {v:.3f}" for k, v in var.items()), flush=True)

    seen = [q for q in attribute_prompts() for _ in range(args.per_prompt)]
    caps = [data.captions[i] for i in torch.randperm(len(data), generator=torch.Generator().manual_seed(2))[:args.n]]
    rows = []
    for w in weights:
        for model in ("unclip", "direct"):
            t0 = time.perf_counter()
            with torch.no_grad():
                if model == "unclip":
                    draw = lambda q, s: u.text_to_image(q, seed=s, w_prior=w, w_decoder=w, **how)  # noqa: E731
                else:
                    draw = lambda q, s: generate(direct.guided(w=w)[0], len(q), direct.shape, seed=s,  # noqa: E731
                                                 labels=direct.prompts(q), **how).clamp(-1, 1)
                x = draw(seen, 0)
                fid = prompt_fidelity(x, seen, bins, digits(x))
                fd = evaluator.evaluate(draw(caps, 2).cpu())
            rows.append({"model": model, "w": w, **{k: v for k, v in fid.items() if not k.startswith("n_")},
                         "fd": fd["fd"], "seconds": time.perf_counter() - t0})
            r = rows[-1]
            print(f"{model:6s} w {w:3.1f}: digit {r['digit']:.3f} thickness {r['thickness']:.3f} slant {r['slant']:.3f} "
                  f"size {r['size']:.3f} | FD {r['fd']:.3f} ({r['seconds']:.0f} s)", flush=True)

    with torch.no_grad():  # the picture: variations, interpolations, a text diff
        k = 7
        var_rows = [torch.cat([src[i:i + 1], x_var[4 * i:4 * i + 4]]) for i in range(3)]
        a, b = u.embed(data.x[[0, 4000]])
        path = torch.stack([slerp_embeddings(a, b, float(t)) for t in torch.linspace(0, 1, k)])
        interp = torch.cat([u.decode(path[j:j + 1], seed=11, w=1.0, **how) for j in range(k)])  # the same noise
        thin = next(i for i, c in enumerate(data.captions) if "seven" in c and "thin" in c)
        t_from, t_to = u.text_embeddings(["a thin seven", "a thick seven"])
        z0 = u.embed(data.x[thin:thin + 1])
        diffs = torch.cat([text_diff(z0, t_from, t_to, float(t)) for t in torch.linspace(0, 0.5, k)])
        diff_x = torch.cat([u.decode(diffs[j:j + 1], seed=13, w=1.0, **how) for j in range(k)])
    pad = lambda x: torch.cat([x, -torch.ones(k - len(x), *x.shape[1:])]) if len(x) < k else x  # noqa: E731
    grid = [pad(r) for r in var_rows] + [interp, diff_x]
    save_row_strip([torch.stack([g[j] for g in grid]) for j in range(k)], FIGURES / "unclip.png", scale=2)
    write_result("unclip_mnist", {"train_min": minutes, "prior_steps": args.prior_steps,
                                  "decoder_steps": args.decoder_steps, "nfe_per_stage": NFE, "sampler": SAMPLER,
                                  "variations": var, "rows": rows, "n": args.n, "per_prompt": args.per_prompt,
                                  "evaluator": evaluator.info})
    print("picture rows: three sources with 4 variations each; an interpolation between two images' embeddings; the "
          "text diff 'a thin seven' -> 'a thick seven' (alpha 0 ... 0.5) from a thin seven")
    return verdict(claims(var, rows))


if __name__ == "__main__":
    sys.exit(main())
