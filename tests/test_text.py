"""Text conditioning (issue 23): captions whose truth is known, the tokenizer, the text encoder and cross-attention,
classifier-free guidance through the text path (exact on an analytic mixture), and the CLI's prompts."""
import json

import numpy as np
import pytest
import torch

from denoisekit import DiscreteVP, GaussianMixture, sample
from denoisekit.cli import main
from denoisekit.conditioning import Cond
from denoisekit.guidance import ClassifierFreeGuidance
from denoisekit.nets.text import CrossAttention, TextEncoder
from denoisekit.text import ATTRIBUTES, TextTokenizer, caption, measure, parse
from denoisekit.text.captions import DIGITS, folder_captions
from denoisekit.utils import sample_generators

from test_reliability import one_line_error

pytest.importorskip("tokenizers", reason="text conditioning needs the tokenizers package (the text extra)")


def _bar(width: int, lean: float, height: int = 16) -> torch.Tensor:
    """A 28x28 image in [-1, 1] of a stroke `width` pixels wide whose top is shifted `lean` pixels right per row."""
    img = -torch.ones(1, 28, 28)
    for r in range(6, 6 + height):
        c = 14 + lean * (6 + height / 2 - r)
        img[0, r, int(round(c - width / 2)):int(round(c - width / 2)) + width] = 1
    return img


def test_measurers_read_thickness_slant_and_size_off_the_pixels():
    """Thickness 2 area / perimeter grows with the stroke's width; slant -cov(col, row) / var(row) is the stroke's lean
    (columns per row, top to the right positive); the bounding box is the ink's extent."""
    x = torch.stack([_bar(1, 0), _bar(2, 0), _bar(4, 0), _bar(2, 0.5), _bar(2, -0.5), _bar(2, 0, height=8)])
    m = measure(x)
    assert m["thickness"][0] < m["thickness"][1] < m["thickness"][2]
    assert m["thickness"][2] == pytest.approx(2 * 4 * 16 / (2 * 16 + 2 * 4))  # 2 area / perimeter: about w
    assert abs(m["slant"][1]) < 1e-6
    assert m["slant"][3] == pytest.approx(0.5, abs=0.05) and m["slant"][4] == pytest.approx(-0.5, abs=0.05)
    assert m["box"][1] == 2 * 16 and m["box"][5] == 2 * 8


def test_captions_say_what_they_were_made_from():
    """Every digit x attribute combination, in every phrasing, parses back to the digit and bins it was made from
    (the middle bin is left unsaid)."""
    from denoisekit.text.captions import TEMPLATES
    for d in range(10):
        for t in range(3):
            for s in range(3):
                for z in range(3):
                    for template in range(len(TEMPLATES)):
                        attrs = {"thickness": t, "slant": s, "size": z}
                        text = caption(d, attrs, template)
                        asked = parse(text)
                        assert asked["digit"] == d, text
                        for a in ATTRIBUTES:
                            assert asked[a] == (None if attrs[a] == 1 else attrs[a]), (text, a)


def test_mnist_captions_bins_are_tertiles_and_captions_match_labels():
    from denoisekit.data import load_dataset
    ds = load_dataset("mnist-captions")
    assert len(ds.captions) == len(ds) == 5000 and ds.conditioning(slice(0, 2)) is None  # not tokenized yet
    for a in ("thickness", "slant"):
        counts = np.bincount(ds.attributes[a], minlength=3)
        assert counts.min() >= 1600, (a, counts)
    again = ds.bins.attributes(ds.x[:500], ds.y[:500].numpy())
    for i in range(0, 500, 37):
        asked = parse(ds.captions[i])
        assert asked["digit"] == int(ds.y[i])
        for a in ATTRIBUTES:
            assert asked[a] in (None, int(again[a][i]))


def test_tokenizer_round_trip_padding_and_the_empty_caption():
    tok = TextTokenizer.train(["a thick seven slanting right", "a small thin two", "the digit nine"], 64, 8)
    ids = tok(["a thick seven", "", "the digit nine slanting right a small thin two seven"])
    assert ids.shape == (3, 8) and ids.dtype == torch.long
    assert (ids[1] == 0).all() and (ids[0, :3] > 1).all() and (ids[0, 3:] == 0).all()  # padded with 0
    assert (ids[2] != 0).all()  # truncated at max_len
    back = TextTokenizer.from_dict(json.loads(json.dumps(tok.to_dict())))
    assert torch.equal(back(["a thick seven", "zebra"]), tok(["a thick seven", "zebra"]))
    with pytest.raises(ValueError, match="^text: the checkpoint's tokenizer does not load"):
        TextTokenizer.from_dict({"json": "{not json", "max_len": 8})


def test_text_encoder_and_cross_attention_ignore_padding():
    """Masked positions change nothing: extra padding tokens (encoder) or garbage context behind a False mask
    (cross-attention); the empty caption gives a zero context and pooled vector, finite outputs."""
    torch.manual_seed(0)
    enc = TextEncoder(vocab_size=20, dim=16, layers=2, heads=4, max_len=8).eval()
    tokens = torch.tensor([[3, 5, 7, 0, 0, 0, 0, 0], [0] * 8])
    ctx, mask, pooled = enc(tokens)
    ctx4, _, pooled4 = enc(tokens[:, :4])
    assert torch.allclose(ctx[:, :4], ctx4, atol=1e-5) and torch.allclose(pooled, pooled4, atol=1e-5)
    assert (ctx[1] == 0).all() and (pooled[1] == 0).all() and torch.isfinite(ctx).all()
    assert mask.tolist()[0] == [True] * 3 + [False] * 5
    xa = CrossAttention(8, 16, num_heads=2)
    torch.nn.init.normal_(xa.proj.weight)  # the zero-initialised output would hide everything
    x = torch.randn(2, 8, 4, 4)
    junk = ctx.clone()
    junk[:, 3:] = torch.randn_like(junk[:, 3:]) * 10
    out = xa(x, ctx, mask)
    assert torch.allclose(out, xa(x, junk, mask), atol=1e-5) and torch.isfinite(out).all()
    assert not torch.allclose(out[0], xa(x, junk, torch.ones_like(mask))[0], atol=1e-3)


def test_text_guidance_equals_label_guidance_on_an_analytic_mixture():
    """Captions naming a mixture component, read through the tokenizer: CFG through the text path (the empty
    caption as the null condition) draws bitwise what CFG through the class label draws, same seed."""
    gm = GaussianMixture([0.5, 0.3, 0.2], [[-1.0, 0.0], [1.0, 0.5], [0.0, -1.2]], [0.3, 0.25, 0.2])
    process = DiscreteVP(T=200)
    captions = [f"a point of cluster {DIGITS[k]}" for k in range(3)]
    tok = TextTokenizer.train(captions, 64, 8)
    component = {tuple(tok([c])[0].tolist()): k for k, c in enumerate(captions)}

    def reads_text(x_t, t, cond):
        rows = [tuple(r.tolist()) for r in Cond.of(cond).tokens]
        labels = torch.tensor([component.get(r, -1) for r in rows])  # the empty caption: the whole mixture
        return gm.posterior_mean(x_t, process.alpha(t.double()), process.sigma(t.double()), labels).to(x_t.dtype)
    from denoisekit import Denoiser
    by_text = Denoiser.from_function(reads_text, process, prediction="x0")
    by_label = gm.denoiser(process, conditional=True)
    labels = torch.tensor([0, 1, 2, 2, 1, 0])
    x_T = torch.randn(6, 2, generator=torch.Generator().manual_seed(1))
    want = sample(ClassifierFreeGuidance(by_label, 2.0), x_T, "ddpm", 20, cond=labels,
                  generator=sample_generators(3, 6))
    got = sample(ClassifierFreeGuidance(by_text, 2.0), x_T, "ddpm", 20,
                 cond=Cond(tokens=tok([captions[k] for k in labels])), generator=sample_generators(3, 6))
    assert torch.equal(want, got)
    plain = sample(by_label, x_T, "ddpm", 20, cond=labels, generator=sample_generators(3, 6))
    assert not torch.allclose(plain, got)  # the guidance did something


def test_folder_captions_from_txt_files_and_jsonl(tmp_path):
    from PIL import Image
    for name in ("a", "b", "c"):
        Image.new("L", (8, 8)).save(tmp_path / f"{name}.png")
    (tmp_path / "a.txt").write_text("a thick seven\n")
    (tmp_path / "captions.jsonl").write_text('{"file": "b.png", "caption": "a thin two"}\n')
    files = sorted(tmp_path.glob("*.png"))
    with pytest.raises(ValueError, match=r"^data: .*c.png has no caption \(c.txt beside it, or an entry in "):
        folder_captions(tmp_path, files)
    (tmp_path / "captions.jsonl").write_text('{"file": "b.png", "caption": "a thin two"}\n\n'
                                            '{"file": "c.png", "caption": "nine"}\n')
    assert folder_captions(tmp_path, files) == ["a thick seven", "a thin two", "nine"]
    (tmp_path / "captions.jsonl").write_text('{"file": "b.png"}\n')
    with pytest.raises(ValueError, match=r"captions.jsonl line 1: expected a JSON object with 'file' and 'caption'"):
        folder_captions(tmp_path, files)


TEXT_RUN = ("data: mnist-captions\ntext_cond: true\ntext: {dim: 16, layers: 1, heads: 2, max_len: 12}\n"
            "net: {patch_size: 2, channels: 16, channel_mult: [1, 2], num_res_blocks: 1, attention_levels: [1]}\n"
            "train: {steps: 4, batch_size: 8, checkpoint_every: 4, log_every: 2, progress: false, tensorboard: false}\n"
            "sample: {sampler: ddim, steps: 3, n: 4}\n")


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("text")
    (root / "t.yaml").write_text(TEXT_RUN)
    assert main(["train", "--config", str(root / "t.yaml"), "--out", str(root / "run")]) == 0
    return root / "run"


def test_a_text_model_trains_and_samples_one_row_per_prompt(text_run, tmp_path, capsys):
    """train -> sample with prompts (one grid row each, guided), from a file too; the checkpoint carries its
    tokenizer; with no prompt, the empty caption (unconditional)."""
    from PIL import Image

    from denoisekit.models import load_model
    model = load_model(text_run)
    assert model.text and model.guidance == ("cfg",)  # trained with caption dropout (p_uncond 0.1 by default)
    assert model.prompts(["a thick seven"]).tokens.shape == (1, 12)
    capsys.readouterr()
    assert main(["sample", str(text_run), "--prompt", "a thick seven", "--prompt", "a small two", "--guidance", "3",
                 "--n", "6", "--steps", "3", "--sampler", "ddim", "--out", str(tmp_path / "p.png"),
                 "--npz", str(tmp_path / "p.npz")]) == 0
    assert "one row per prompt" in capsys.readouterr().out
    x = np.load(tmp_path / "p.npz")["x"]
    assert x.shape == (6, 1, 28, 28) and np.isfinite(x).all()
    assert not np.allclose(x[0], x[3])
    (tmp_path / "prompts.txt").write_text("a thick seven\n\na small two\n")
    assert main(["sample", str(text_run), "--prompts", str(tmp_path / "prompts.txt"), "--guidance", "3", "--n", "6",
                 "--steps", "3", "--sampler", "ddim", "--npz", str(tmp_path / "f.npz"),
                 "--out", str(tmp_path / "f.png")]) == 0
    assert np.array_equal(np.load(tmp_path / "f.npz")["x"], x)  # the same prompts, the same samples
    assert main(["sample", str(text_run), "--n", "2", "--steps", "3", "--sampler", "ddim",
                 "--out", str(tmp_path / "u.png")]) == 0
    with Image.open(tmp_path / "p.png") as im:
        assert im.size[1] < im.size[0]  # two rows of three


@pytest.mark.parametrize("argv, message", [
    (["--prompt", "a seven", "--class", "3"], "--class: a text model is asked by --prompt; give one or the other"),
    (["--prompts", "missing.txt"], "--prompts: missing.txt: no such file"),
    (["--prompts", "empty.txt"], "holds no prompt (one a line)"),
    (["--guidance", "2"], "--guidance: guides toward a caption; give --prompt TEXT or --prompts FILE"),
])
def test_prompt_bad_input(text_run, tmp_path, capsys, argv, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.txt").write_text("\n  \n")
    capsys.readouterr()
    assert main(["sample", str(text_run), "--n", "2", "--out", str(tmp_path / "s.png"), *argv]) == 2
    one_line_error(capsys, message)
    assert not (tmp_path / "s.png").exists()


def test_a_prompt_to_a_model_without_text_is_one_line(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: digits\nnet: {channels: 8, channel_mult: [1], num_res_blocks: 1}\n"
                   "train: {steps: 1, batch_size: 8, progress: false, tensorboard: false}\n")
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    assert main(["sample", str(tmp_path / "run"), "--prompt", "a seven", "--out", str(tmp_path / "s.png")]) == 2
    one_line_error(capsys, "--prompt: ", "was trained without captions (text_cond); it takes no prompt")


@pytest.mark.parametrize("over, message", [
    (["--set", "text_cond=false", "--set", "text.dim=8"], "text: sizes a text-conditional model's tokenizer"),
    (["--set", "text.heads=3"], "text.heads: expected a divisor of text.dim (16)"),
    (["--set", "text.vocab_size=2"], "text.vocab_size: expected at least 8"),
    (["--set", "text.colour=1"], "text: unknown key 'colour'"),
    (["--set", "net.text={dim: 8}"], "net.text: set by text_cond"),
    (["--set", "net.pooled_dim=8"], "net.pooled_dim: set by conditioning recipes"),
    (["--set", "class_cond=true"], "text_cond: a caption names the class; remove class_cond"),
    (["--set", "data=digits"], "text_cond: the data set 'digits' has no captions"),
    (["--set", "net.attention_levels=[]"], "attention_levels: expected at least one level when the network reads"),
    (["--set", "objective=ddgan"], "text_cond: objective ddgan trains no text-conditional denoiser"),
    (["--set", "text.holdout=[a thick]"], "text.holdout: expected phrases that name a digit and an attribute"),
    (["--set", "text.holdout=[3]"], "text.holdout"),
    (["--set", "stream=true"], "text_cond: captioned data is loaded whole for now; remove stream"),
])
def test_text_config_bad_input(tmp_path, capsys, over, message):
    cfg = tmp_path / "t.yaml"
    cfg.write_text(TEXT_RUN)
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "out"), *over]) == 2
    one_line_error(capsys, message)
    assert not (tmp_path / "out").exists()


def test_a_captioned_image_folder_trains_and_names_a_missing_caption(tmp_path, capsys):
    from PIL import Image
    root = tmp_path / "imgs"
    root.mkdir()
    for i in range(8):
        Image.new("L", (8, 8), color=30 * i).save(root / f"{i}.png")
        (root / f"{i}.txt").write_text("bright" if i > 3 else "dark")
    cfg = tmp_path / "t.yaml"
    cfg.write_text(f"data: {root}\ntext_cond: true\ntext: {{dim: 8, layers: 1, heads: 2, vocab_size: 16}}\n"
                   "net: {channels: 8, channel_mult: [1, 2], num_res_blocks: 1, attention_levels: [1]}\n"
                   "train: {steps: 2, batch_size: 4, progress: false, tensorboard: false}\n"
                   "sample: {sampler: ddim, steps: 2, n: 2}\n")
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 0
    (root / "5.txt").unlink()
    capsys.readouterr()
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "run2")]) == 2
    one_line_error(capsys, "5.png has no caption (5.txt beside it, or an entry in captions.jsonl)")
    assert not (tmp_path / "run2").exists()


def test_prompt_fidelity_scores_real_digits_against_their_own_captions():
    """MNIST images scored against the captions made from them: every named attribute and the digit (the labels as
    the prediction) are right; against another image's caption they mostly are not."""
    from denoisekit.data import load_dataset
    from denoisekit.text.fidelity import attribute_prompts, prompt_fidelity
    ds = load_dataset("mnist-captions")
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[:400]
    x, caps, y = ds.x[idx], [ds.captions[i] for i in idx.tolist()], ds.y[idx]
    own = prompt_fidelity(x, caps, ds.bins, y)
    assert own["digit"] == 1.0 and all(own[a] == 1.0 for a in ATTRIBUTES), own
    assert min(own[f"n_{a}"] for a in ATTRIBUTES) > 100
    other = prompt_fidelity(x, caps[1:] + caps[:1], ds.bins, y)
    assert other["digit"] < 0.3 and max(other[a] for a in ATTRIBUTES) < 0.75, other
    prompts = attribute_prompts()
    assert len(prompts) == 60 and all(sum(v is not None for v in parse(q).values()) == 2 for q in prompts)


def test_holdout_keeps_the_combinations_out_of_training():
    from denoisekit.data import load_dataset
    from denoisekit.recipes.text import TextSettings, tokenize_dataset
    ds = load_dataset("mnist-captions")
    thick_threes = int(((ds.y == 3) & torch.as_tensor(ds.attributes["thickness"] == 2)).sum())
    tokenize_dataset(ds, TextSettings(holdout=("a thick three",)))
    assert thick_threes > 50 and len(ds) == 5000 - thick_threes == len(ds.tokens) == len(ds.captions)
    assert not ((ds.y == 3) & torch.as_tensor(ds.attributes["thickness"] == 2)).any()
    assert (ds.y == 3).sum() > 300  # thin and medium threes stay
    assert all(not (parse(c)["digit"] == 3 and parse(c)["thickness"] == 2) for c in ds.captions)


# --- noised CLIP and CLIP guidance (GLIDE) -------------------------------------------------------------------------

def test_clip_loss_is_clips_contrastive_loss_with_repeated_captions_as_positives():
    """Against a direct float64 computation: logits s f.g^T, targets uniform over identical captions, the mean of the
    image->text and text->image cross entropies; equal to CLIP's loss when the captions are distinct."""
    from denoisekit.guidance import NoisyCLIP
    from denoisekit.nets.clip import NoisyCLIPNet
    from denoisekit.objectives import CLIPLoss
    torch.manual_seed(0)
    net = NoisyCLIPNet(1, 16, {"channels": 8, "channel_mult": [1, 2]},
                       {"vocab_size": 20, "dim": 16, "layers": 1, "heads": 2, "max_len": 4})
    clip = NoisyCLIP(net, DiscreteVP(T=100))
    x0 = torch.rand(5, 1, 8, 8) * 2 - 1
    tokens = torch.tensor([[3, 4, 0, 0], [5, 0, 0, 0], [3, 4, 0, 0], [6, 7, 8, 0], [3, 4, 0, 0]])
    loss = CLIPLoss()(clip, x0, Cond(tokens=tokens), sample_generators(0, 5))
    g = sample_generators(0, 5)  # the same draws of t and the noise, by hand
    t = CLIPLoss().times.sample_t(clip.process, 5, g)
    x_t = clip.process.perturb(x0, t, g)
    f, gg = clip.image(x_t, t).double(), net.text(tokens).double()
    logits = float(net.scale.detach()) * f @ gg.T
    same = torch.tensor([[1., 0, 1, 0, 1], [0, 1, 0, 0, 0], [1, 0, 1, 0, 1], [0, 0, 0, 1, 0], [1, 0, 1, 0, 1]])
    target = same / same.sum(1, keepdim=True)
    want = (-(target * logits.log_softmax(1)).sum(1) - (target * logits.T.log_softmax(1)).sum(1)) / 2
    assert torch.allclose(loss.double(), want, atol=1e-5)
    distinct = torch.tensor([[3, 0, 0, 0], [4, 0, 0, 0], [5, 0, 0, 0], [6, 0, 0, 0], [7, 0, 0, 0]])
    loss = CLIPLoss()(clip, x0, Cond(tokens=distinct), sample_generators(0, 5))
    logits = float(net.scale.detach()) * f @ net.text(distinct).double().T
    ce = torch.nn.functional.cross_entropy
    assert torch.allclose(loss.double(), (ce(logits, torch.arange(5), reduction="none")
                                          + ce(logits.T, torch.arange(5), reduction="none")) / 2, atol=1e-5)


def test_clip_guidance_follows_the_gradient_of_the_contrastive_logit():
    """ClassifierGuidance reading the caption's tokens: eps-hat = eps - s sigma grad_x (scale f(x_t, t) . g(c))."""
    from denoisekit.guidance import ClassifierGuidance, NoisyCLIP
    from denoisekit.nets.clip import NoisyCLIPNet
    torch.manual_seed(1)
    process = DiscreteVP(T=100)
    net = NoisyCLIPNet(1, 8, {"channels": 8, "channel_mult": [1]},
                       {"vocab_size": 12, "dim": 8, "layers": 1, "heads": 2, "max_len": 3})
    clip = NoisyCLIP(net, process)
    base = GaussianMixture([1.0], [[0.0] * 16], [0.5])

    def x0_fn(x_t, t, cond=None):
        flat = x_t.reshape(len(x_t), -1)
        return base.posterior_mean(flat, process.alpha(t.double()), process.sigma(t.double())).reshape(
            x_t.shape).to(x_t.dtype)
    from denoisekit import Denoiser
    d = Denoiser.from_function(x0_fn, process, prediction="x0")
    tokens = torch.tensor([[3, 4, 0], [5, 0, 0]])
    guided = ClassifierGuidance(d, clip.log_prob, 2.0, reads="tokens")
    x, t = torch.randn(2, 1, 4, 4), torch.tensor([40.0, 40.0])
    xg = x.clone().requires_grad_(True)
    grad = torch.autograd.grad(clip.log_prob(xg, t, tokens).sum(), xg)[0]
    sigma = process.sigma(t.double()).float().reshape(-1, 1, 1, 1)
    want = d(x, t).eps - 2.0 * sigma * grad
    assert torch.allclose(guided(x, t, Cond(tokens=tokens)).eps, want, atol=1e-5)
    with pytest.raises(ValueError, match=r"^guidance: needs cond.tokens"):
        guided(x, t, torch.tensor([0, 1]))


CLIP_RUN = ("data: mnist-captions\ntext: {dim: 16, layers: 1, heads: 2, max_len: 12}\n"
            "net: {channels: 8, channel_mult: [1, 2], num_res_blocks: 1}\n"
            "train: {steps: 4, batch_size: 16, checkpoint_every: 4, log_every: 2, progress: false, tensorboard: false}\n")


def test_train_clip_then_clip_guided_sampling(text_run, tmp_path, capsys):
    """train-clip writes a checkpoint with its own tokenizer and a retrieval report; `sample --clip` guides a text
    model toward its prompts (the two tokenizers mapped prompt by prompt); bad input is one line."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CLIP_RUN)
    assert main(["train-clip", "--config", str(cfg), "--out", str(tmp_path / "clip")]) == 0
    report = json.loads((tmp_path / "clip" / "retrieval.json").read_text())
    assert set(report) == {"step", "t=0", "t=250", "t=500", "t=750", "t=999"}
    common = ["--prompt", "a thick seven", "--prompt", "a thin two", "--n", "4", "--steps", "3", "--sampler", "ddim"]
    assert main(["sample", str(text_run), *common, "--npz", str(tmp_path / "plain.npz"),
                 "--out", str(tmp_path / "plain.png")]) == 0
    assert main(["sample", str(text_run), *common, "--clip", str(tmp_path / "clip"), "--clip-scale", "50",
                 "--npz", str(tmp_path / "g.npz"), "--out", str(tmp_path / "g.png")]) == 0
    plain, g = np.load(tmp_path / "plain.npz")["x"], np.load(tmp_path / "g.npz")["x"]
    assert np.isfinite(g).all() and not np.allclose(plain, g)
    capsys.readouterr()
    for argv, message in ((["--clip", str(text_run)], "--clip: "), (["--clip", str(tmp_path / "clip")],
                                                                  "--clip: guides toward a caption; give --prompt"),
                          (["--clip", str(tmp_path / "clip"), "--prompt", "a two", "--clip-scale", "nan"],
                           "--clip-scale: expected a finite number")):
        assert main(["sample", str(text_run), "--n", "2", "--out", str(tmp_path / "bad.png"), *argv]) == 2
        one_line_error(capsys, message)
    assert not (tmp_path / "bad.png").exists()
    assert main(["train-clip", "--config", str(cfg), "--out", str(tmp_path / "c2"), "--set", "net.out_channels=2"]) == 2
    one_line_error(capsys, "net")
    assert main(["train-clip", "--config", str(cfg), "--out", str(tmp_path / "c3"), "--data", "digits"]) == 2
    one_line_error(capsys, "has no captions")


def test_eval_of_a_text_model_asks_with_the_data_captions(text_run, capsys):
    """`eval RUN` of a text model draws with captions spread over its captioned data set and scores the digits the
    captions name (class accuracy)."""
    capsys.readouterr()
    assert main(["eval", str(text_run), "--n", "20", "--steps", "2", "--sampler", "ddim", "--k", "2"]) == 0
    out = capsys.readouterr().out
    assert "class_accuracy" in out or "class accuracy" in out, out


# --- Imagen's pieces: a frozen pre-trained text encoder, a text-conditional super-resolution stage --------------------

SMALL = ("data: mnist-captions\ntext_cond: true\nimage_size: {size}\nprediction: v\n"
         "net: {{channels: 8, channel_mult: [1, 2], num_res_blocks: 1, attention_levels: [1]}}\n"
         "train: {{steps: 3, batch_size: 8, checkpoint_every: 3, progress: false, tensorboard: false}}\n"
         "sample: {{sampler: ddim, steps: 2, n: 2}}\n")


def test_a_frozen_clip_text_encoder_and_a_text_conditional_cascade(tmp_path, capsys):
    """text.encoder: a train-clip run's tokenizer and text encoder, copied in and kept fixed while the U-Net trains;
    a text-conditional super-resolution stage on the same encoder; `sample --cascade BASE SR --prompt` reads the
    prompts through each stage's tokenizer."""
    from safetensors.torch import load_file

    from denoisekit.models import load_model, open_clip
    (tmp_path / "c.yaml").write_text(CLIP_RUN.replace("steps: 4", "steps: 1"))
    assert main(["train-clip", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "clip")]) == 0
    clip = str(tmp_path / "clip")
    (tmp_path / "base.yaml").write_text(SMALL.format(size=8) + f"text: {{encoder: {clip}}}\n")
    (tmp_path / "sr.yaml").write_text(SMALL.format(size=16) + f"text: {{encoder: {clip}}}\n"
                                      "super_resolution: {low_size: 8}\n")
    for name in ("base", "sr"):
        assert main(["train", "--config", str(tmp_path / f"{name}.yaml"), "--out", str(tmp_path / name)]) == 0
    enc = open_clip(clip).clip.net.text_encoder.state_dict()
    base = load_model(tmp_path / "base")
    assert base.record["text"]["tokenizer"] == open_clip(clip).tokenizer.to_dict()
    raw = load_file(str(sorted((tmp_path / "base" / "checkpoints").glob("step-*"))[-1] / "model.safetensors"))
    for k, v in enc.items():
        assert torch.equal(raw[f"net.text.{k}"], v), k  # kept fixed through training
    first = load_file(str(sorted((tmp_path / "base" / "checkpoints").glob("step-*"))[-1] / "model.safetensors"))
    assert any(not torch.equal(first[k], torch.zeros_like(first[k])) for k in first if k.startswith("net.conv_out"))
    capsys.readouterr()
    assert main(["sample", "--cascade", str(tmp_path / "base"), str(tmp_path / "sr"), "--prompt", "a thick seven",
                 "--prompt", "a two", "--guidance", "5", "--threshold", "0.995", "--n", "4", "--steps", "2",
                 "--sampler", "ddim", "--out", str(tmp_path / "c.png"), "--npz", str(tmp_path / "c.npz")]) == 0
    assert "one row per prompt" in capsys.readouterr().out
    x = np.load(tmp_path / "c.npz")
    assert x["x"].shape == (4, 1, 16, 16) and x["low"].shape == (4, 1, 8, 8) and np.isfinite(x["x"]).all()
    (tmp_path / "bad.yaml").write_text(SMALL.format(size=8) + f"text: {{encoder: {tmp_path / 'base'}}}\n")
    assert main(["train", "--config", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "bad")]) == 2
    one_line_error(capsys, "text.encoder: ", "is not a noised CLIP")


def test_networks_read_a_given_pooled_vector():
    """pooled_dim: the U-Net and the MLP add a projected Cond.pooled (a CLIP embedding, as unCLIP's decoder and prior
    read it) to their embedding: the output depends on it, zeros (the null condition) are a valid input, and a
    missing or mis-sized vector is one line."""
    from denoisekit.nets import MLP, UNet
    torch.manual_seed(0)
    for net, x in ((MLP(dim=4, hidden=16, pooled_dim=6), torch.randn(3, 4)),
                   (UNet(in_channels=1, channels=8, channel_mult=(1,), pooled_dim=6), torch.randn(3, 1, 4, 4))):
        for p in net.parameters():  # the zero-initialised output layers would hide the conditioning
            torch.nn.init.normal_(p, std=0.3)
        c = torch.full((3,), 10.0)
        a, b = torch.randn(3, 6), torch.randn(3, 6)
        out = net(x, c, Cond(pooled=a))
        assert out.shape == x.shape and not torch.allclose(out, net(x, c, Cond(pooled=b)))
        assert torch.allclose(out[:1], net(x[:1], c[:1], Cond(pooled=a[:1])), atol=1e-5)  # per example
        null = Cond(pooled=a).null()
        assert torch.equal(null.pooled, torch.zeros_like(a)) and torch.isfinite(net(x, c, null)).all()
        for bad in (None, Cond(pooled=torch.randn(3, 5))):
            with pytest.raises(ValueError, match=r"^cond.pooled: this network reads a pooled vector of size 6"):
                net(x, c, bad)


def test_a_transformers_text_model_from_disk_as_the_frozen_encoder(tmp_path, capsys):
    """--text-encoder PATH: a local transformers folder (a tiny random CLIP text model and a fast tokenizer, saved
    here) is the frozen encoder: its tokenizer (ids shifted so 0 pads) and weights are the model's, the run samples
    from prompts, the checkpoint reopens without the folder; a folder that is not one is one line."""
    transformers = pytest.importorskip("transformers", reason="the transformers package is an optional extra")
    import shutil

    from safetensors.torch import load_file

    from denoisekit.models import load_model
    from denoisekit.data import load_dataset
    tok = TextTokenizer.train(load_dataset("mnist-captions").captions[:500], 64, 12)
    folder = tmp_path / "hf"
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok.tok, pad_token="[PAD]", unk_token="[UNK]") \
        .save_pretrained(folder)
    torch.manual_seed(0)
    model = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=tok.vocab_size, hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=1,
        max_position_embeddings=12, bos_token_id=0, eos_token_id=1, pad_token_id=0))
    model.save_pretrained(folder)
    (tmp_path / "t.yaml").write_text(SMALL.format(size=8) + "text: {max_len: 12}\n")
    assert main(["train", "--config", str(tmp_path / "t.yaml"), "--out", str(tmp_path / "run"),
                 "--text-encoder", str(folder)]) == 0
    raw = load_file(str(sorted((tmp_path / "run" / "checkpoints").glob("step-*"))[-1] / "model.safetensors"))
    for k, v in model.state_dict().items():
        assert torch.equal(raw[f"net.text.model.{k}"], v), k
    shutil.rmtree(folder)
    loaded = load_model(tmp_path / "run")
    ids = loaded.prompts(["a thick seven"]).tokens[0]
    want = [i + 1 for i in tok.tok.encode("a thick seven").ids]  # shifted by one: 0 pads
    assert ids.tolist()[:len(want)] == want and (ids[len(want):] == 0).all()
    capsys.readouterr()
    assert main(["sample", str(tmp_path / "run"), "--prompt", "a thick seven", "--guidance", "2", "--n", "2",
                 "--steps", "2", "--sampler", "ddim", "--out", str(tmp_path / "s.png")]) == 0
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "config.json").write_text('{"model_type": "clip_text_model"}')
    assert main(["train", "--config", str(tmp_path / "t.yaml"), "--out", str(tmp_path / "bad"),
                 "--text-encoder", str(tmp_path / "fake")]) == 2
    one_line_error(capsys, "text.encoder: ", "does not load as a transformers text model and tokenizer")
    assert not (tmp_path / "bad").exists()


# --- unCLIP (DALL-E 2): a prior over CLIP image embeddings and a decoder -------------------------------------------

def test_slerp_and_text_diffs_on_the_sphere():
    from denoisekit.recipes.unclip import slerp_embeddings, text_diff
    g = torch.Generator().manual_seed(0)
    a, b = (torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=-1) for _ in range(2))
    assert torch.allclose(slerp_embeddings(a, b, 0.0), a, atol=1e-6)
    assert torch.allclose(slerp_embeddings(a, b, 1.0), b, atol=1e-5)
    mid = slerp_embeddings(a, b, 0.5)
    assert torch.allclose(mid.norm(dim=-1), torch.ones(4), atol=1e-5)
    assert torch.allclose((mid * a).sum(-1), (mid * b).sum(-1), atol=1e-5)  # halfway in angle
    t0, t1 = torch.randn(8, generator=g), torch.randn(8, generator=g)
    assert torch.allclose(text_diff(a, t0, t1, 0.0), a, atol=1e-6)
    d = torch.nn.functional.normalize(t1 - t0, dim=-1)
    assert torch.allclose(text_diff(a, t0, t1, 1.0), d.expand_as(a), atol=1e-5)


def test_unclip_prior_and_decoder_train_and_draw_text_to_image(tmp_path, capsys):
    """unclip.stage prior: the CLIP image embeddings (x sqrt(D)) given the captions' text embeddings; decoder: images
    given their image embeddings; text to image through both, variations of an image; bad input is one line."""
    from denoisekit.recipes.unclip import UnCLIP
    (tmp_path / "c.yaml").write_text(CLIP_RUN.replace("steps: 4", "steps: 1"))
    assert main(["train-clip", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "clip")]) == 0
    clip = str(tmp_path / "clip")
    common = "train: {steps: 2, batch_size: 8, checkpoint_every: 2, progress: false, tensorboard: false}\n" \
             "sample: {sampler: ddim, steps: 2, n: 4}\n"
    (tmp_path / "p.yaml").write_text(f"data: mnist-captions\nprediction: x0\nunclip: {{clip: {clip}, stage: prior}}\n"
                                     "net: {hidden: 32, depth: 2}\n" + common)
    (tmp_path / "d.yaml").write_text(f"data: mnist-captions\nunclip: {{clip: {clip}, stage: decoder}}\n"
                                     "net: {channels: 8, channel_mult: [1, 2], num_res_blocks: 1}\n" + common)
    for name in ("p", "d"):
        assert main(["train", "--config", str(tmp_path / f"{name}.yaml"), "--out", str(tmp_path / name)]) == 0
    u = UnCLIP.open(tmp_path / "d", tmp_path / "p")
    assert u.prior.shape == (16,) and u.prior.record["unclip"]["scale"] == pytest.approx(4.0)
    z = u.image_embeddings(["a thick seven", "a two"], seed=0, w=2.0, steps=2, sampler="ddim")
    assert z.shape == (2, 16) and torch.allclose(z.norm(dim=-1), torch.ones(2), atol=1e-5)
    x = u.text_to_image(["a thick seven", "a two"], seed=0, w_prior=2.0, w_decoder=2.0, steps=2, sampler="ddim")
    assert x.shape == (2, 1, 28, 28) and torch.isfinite(x).all()
    from denoisekit.data import load_dataset
    img = load_dataset("mnist").x[:1]
    z_i = u.embed(img)
    var = u.decode(z_i.repeat(3, 1), seed=5, steps=2, sampler="ddim")
    assert var.shape == (3, 1, 28, 28) and not torch.allclose(var[0], var[1])  # new noise, one embedding
    other = u.decode(-z_i.repeat(3, 1), seed=5, steps=2, sampler="ddim")
    assert not torch.equal(var, other)  # the same noise, another embedding: the decoder reads z_i
    with pytest.raises(ValueError, match=r"^DECODER: .* is not an unCLIP decoder"):
        UnCLIP.open(tmp_path / "p")
    capsys.readouterr()
    assert main(["sample", str(tmp_path / "d"), "--prior", str(tmp_path / "p"), "--prompt", "a thick seven",
                 "--prompt", "a two", "--n", "4", "--guidance", "2", "--steps", "2", "--sampler", "ddim",
                 "--npz", str(tmp_path / "u.npz"), "--out", str(tmp_path / "u.png")]) == 0
    assert "one row per prompt" in capsys.readouterr().out
    assert np.load(tmp_path / "u.npz")["x"].shape == (4, 1, 28, 28)
    for argv, message in (([str(tmp_path / "d"), "--prompt", "a two"], "is an unCLIP stage; sample text to image"),
                          ([str(tmp_path / "d"), "--prior", str(tmp_path / "p")], "--prior: unCLIP draws from captions"),
                          ([str(tmp_path / "p"), "--prior", str(tmp_path / "p"), "--prompt", "a two"],
                           "DECODER: "),
                          ([str(tmp_path / "d"), "--prior", str(tmp_path / "d"), "--prompt", "a two"],
                           "--prior: "),
                          (["eval", str(tmp_path / "d")], "is an unCLIP stage; write samples")):
        cmd = ["eval", *argv[1:]] if argv[0] == "eval" else ["sample", *argv, "--out", str(tmp_path / "bad.png")]
        assert main(cmd) == 2
        one_line_error(capsys, message)
    assert not (tmp_path / "bad.png").exists()
    for over, message in ((["--set", "unclip.stage=both"], "unclip.stage: expected one of 'prior', 'decoder'"),
                          (["--set", f"unclip.clip={tmp_path / 'd'}"], "unclip.clip: "),
                          (["--set", "text_cond=true"], "unclip: its stages are conditioned on CLIP embeddings alone")):
        assert main(["train", "--config", str(tmp_path / "d.yaml"), "--out", str(tmp_path / "bad"), *over]) == 2
        one_line_error(capsys, message)
        assert not (tmp_path / "bad").exists()
