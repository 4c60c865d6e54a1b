"""Cascaded generation (Ho et al. 2021): the noise-conditioning augmentation's moments by Monte Carlo, the loss wrapper's
levels, the U-Net's augmentation slot, the low-resolution data matching what a base model trains on, and the command
line end to end (train a base and a super-resolution stage, sample --cascade, upscale) with its one-line refusals."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from denoisekit.cascade import NoiseAugmented, SuperResolution, SuperResolutionData, augment, upscale
from denoisekit.cli import main
from denoisekit.conditioning import Cond
from denoisekit.data import load_dataset, resize_images
from denoisekit.models import load_model
from denoisekit.nets import UNet

from test_reliability import one_line_error

QUIET = ["--set", "train.progress=false"]
TINY = ["--set", "net.channels=8", "--set", "net.channel_mult=[1]", "--set", "net.num_res_blocks=1",
        "--batch-size", "16", *QUIET]


@pytest.mark.parametrize("u", [0.0, 0.3, 0.8])
def test_augmentation_keeps_the_variance_and_shrinks_the_signal(u):
    """sqrt(1 - u^2) c + u eps: mean sqrt(1 - u^2) c and std u for a fixed c; unit variance for unit-variance c."""
    g = torch.Generator().manual_seed(0)
    n = 200_000
    c = torch.full((n, 1), 0.8)
    x = augment(c, torch.full((n,), u), torch.randn(n, 1, generator=g))
    assert abs(float(x.mean()) - (1 - u**2) ** 0.5 * 0.8) < 4 * u / n**0.5 + 1e-6
    assert abs(float(x.std()) - u) < 0.01
    z = augment(torch.randn(n, 1, generator=g), torch.full((n,), u), torch.randn(n, 1, generator=g))
    assert abs(float(z.var()) - 1) < 0.015


class Recorder:
    """A loss that records the conditioning it is given."""

    def __init__(self):
        self.seen = []

    def __call__(self, model, x0, cond=None, generator=None):
        self.seen.append(cond)
        return torch.zeros(())

    def config(self):
        return {"class": "Recorder"}


def test_the_augmented_loss_draws_levels_in_range_reproducibly():
    """u ~ U[0, aug_max] per example in Cond.aug, the concat image augmented with it (from the example's generator,
    so the same generator gives the same levels); aug_max 0 leaves the image as it is."""
    c = torch.rand(512, 1, 4, 4) * 2 - 1
    inner = Recorder()
    wrapped = NoiseAugmented(inner, 0.4)
    for seed in (1, 1, 2):
        wrapped(None, c, Cond(concat=c), torch.Generator().manual_seed(seed))
    first, again, other = inner.seen
    u = first.aug
    assert u.shape == (512,) and 0 <= float(u.min()) and float(u.max()) <= 0.4 and float(u.max()) > 0.35
    assert abs(float(u.mean()) - 0.2) < 0.02
    assert torch.equal(first.aug, again.aug) and torch.equal(first.concat, again.concat)
    assert not torch.equal(first.aug, other.aug)
    eps = (first.concat - (1 - u[:, None, None, None] ** 2).sqrt() * c) / u[:, None, None, None]
    assert abs(float(eps.std()) - 1) < 0.03 and abs(float(eps.mean())) < 0.03  # the rest is unit Gaussian noise
    NoiseAugmented(inner, 0.0)(None, c, Cond(concat=c), torch.Generator().manual_seed(0))
    assert torch.equal(inner.seen[-1].concat, c) and float(inner.seen[-1].aug.abs().max()) == 0
    assert wrapped.config() == {"class": "Recorder", "noise_augmentation": {"aug_max": 0.4}}
    with pytest.raises(ValueError, match="Cond.concat"):
        wrapped(None, c, None, torch.Generator())


def test_the_unet_reads_the_augmentation_level():
    """A super-resolution U-Net's output depends on Cond.aug; a missing level, or a level given to a U-Net without
    the slot, is a one-line error."""
    torch.manual_seed(0)
    net = UNet(channels=8, channel_mult=(1,), num_res_blocks=1, cond_channels=1, augment=True)
    for p in net.parameters():  # zero-initialised output layers would hide the dependence
        torch.nn.init.normal_(p, std=0.1)
    x, t, c = torch.randn(2, 1, 8, 8), torch.tensor([10.0, 10.0]), torch.randn(2, 1, 8, 8)
    a = net(x, t, Cond(concat=c, aug=torch.tensor([0.0, 0.0])))
    b = net(x, t, Cond(concat=c, aug=torch.tensor([0.5, 0.5])))
    assert (a - b).abs().max() > 1e-3
    with pytest.raises(ValueError, match="Cond.aug"):
        net(x, t, Cond(concat=c))
    with pytest.raises(ValueError, match=r"cond.aug: expected shape \(2,\)"):
        net(x, t, Cond(concat=c, aug=torch.zeros(3)))
    with pytest.raises(ValueError, match="given aug"):
        UNet(channels=8, channel_mult=(1,), cond_channels=1)(x, t, Cond(concat=c, aug=torch.zeros(2)))


def test_the_low_resolution_images_are_what_a_base_model_trains_on():
    """The SR stage's inputs are the data resized exactly as `image_size` resizes a base model's data."""
    full = load_dataset("digits")
    small = load_dataset("digits", image_size=4)
    assert torch.equal(resize_images(full.x, 4), small.x)
    sr = SuperResolutionData.of(full, SuperResolution(4), labelled=False)
    assert torch.equal(sr.low, small.x)
    cond = sr.conditioning(torch.arange(3))
    assert cond.concat.shape == (3, 1, 8, 8) and cond.label is None


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 4x4 base model and a 4 -> 8 super-resolution stage on digits (class-conditional), and an 8x8 model."""
    root = tmp_path_factory.mktemp("cascade")
    base, sr, full = root / "base", root / "sr", root / "full"
    assert main(["train", "--data", "digits", "--image-size", "4", "--steps", "3", "--out", str(base), *TINY]) == 0
    assert main(["train", "--data", "digits", "--super-resolution", "4", "--set", "class_cond=true",
                 "--set", "super_resolution.aug_max=0.3", "--steps", "3", "--out", str(sr), *TINY]) == 0
    assert main(["train", "--data", "digits", "--steps", "1", "--out", str(full), *TINY]) == 0
    low = load_dataset("digits", image_size=4).x[:2]
    for i, name in enumerate(("low0.png", "low1.png")):
        Image.fromarray(((low[i, 0] + 1) * 127.5).round().byte().numpy(), "L").save(root / name)
    Image.new("L", (8, 8)).save(root / "big.png")
    Image.new("RGB", (4, 4)).save(root / "rgb.png")
    return root


def grid(k: int, size: int = 8, scale: int = 2) -> int:
    """The pixels k tiles of size x size span in a grid at `scale` (2-pixel gaps, scaled)."""
    return k * size * scale + (k + 1) * 2 * scale


def size_of(path) -> tuple:
    with Image.open(path) as im:
        return im.size


def test_cascade_from_the_command_line(runs, tmp_path, capsys):
    """train --super-resolution writes low | SR | real strips; sample --cascade gives the base's 4x4 samples and their
    8x8 completions (same seed, same bytes; stages picture beside --out); upscale completes a user's own images; an
    SR stage's sample i depends only on (seed, i)."""
    sr = runs / "sr"
    strips = sorted((sr / "samples").glob("*.png"))
    assert strips and size_of(strips[-1]) == (grid(3), grid(16))  # 16 rows of low | SR | real
    model = load_model(sr)
    assert model.super_resolution.low_size == 4 and model.super_resolution.aug_max == 0.3
    assert model.info()["super_resolution"]["low_size"] == 4
    pngs = []
    for name in ("a", "b"):
        assert main(["sample", "--cascade", str(runs / "base"), str(sr), "--n", "3", "--steps", "4", "--sampler",
                     "ddim", "--threshold", "0.99", "--out", str(tmp_path / f"{name}.png"),
                     "--npz", str(tmp_path / f"{name}.npz")]) == 0
        pngs.append((tmp_path / f"{name}.png").read_bytes())
    assert pngs[0] == pngs[1] and (tmp_path / "a-stages.png").is_file()
    arrays = np.load(tmp_path / "a.npz")
    assert arrays["x"].shape == (3, 1, 8, 8) and arrays["low"].shape == (3, 1, 4, 4)
    out = capsys.readouterr().out
    assert "4 (base) + 4 (super-resolution)" in out
    assert main(["upscale", str(sr), str(runs / "low0.png"), str(runs / "low1.png"), "--n", "2", "--steps", "3",
                 "--sampler", "ddim", "--class", "1", "--aug-level", "0", "--out", str(tmp_path / "up.png"),
                 "--npz", str(tmp_path / "up.npz")]) == 0
    assert size_of(tmp_path / "up.png") == (grid(3), grid(2))  # 2 rows of the input | 2 versions
    assert np.load(tmp_path / "up.npz")["x"].shape == (4, 1, 8, 8)
    low = load_dataset("digits", image_size=4).x[:3]
    kw = dict(aug_level=0.2, seed=5, labels=torch.tensor([0, 1, 2]), generate_kwargs=dict(steps=3, sampler="ddim"))
    three = upscale(model.denoiser, low, (8, 8), **kw)
    two = upscale(model.denoiser, low[:2], (8, 8), **{**kw, "labels": torch.tensor([0, 1])})
    assert torch.allclose(three[:2], two, atol=1e-5)
    other = upscale(model.denoiser, low, (8, 8), **{**kw, "aug_level": 0.6})
    assert not torch.allclose(three, other, atol=1e-3)  # the level reaches the network and the input
    seen = []
    hook = model.denoiser.net.register_forward_hook(lambda m, args, out: seen.append((args[0], args[2].concat)))
    upscale(model.denoiser, low, (8, 8), **{**kw, "aug_level": 1.0})  # concat: pure augmentation noise
    hook.remove()
    x_T, eps = (v.flatten() for v in seen[0])
    assert abs(float(torch.corrcoef(torch.stack([x_T, eps]))[0, 1])) < 0.5  # its own stream, not the sampler's


@pytest.mark.parametrize("argv, message", [
    (["train", "--data", "digits", "--super-resolution", "8"], "super_resolution.low_size: expected a size below"),
    (["train", "--data", "digits", "--super-resolution", "1"], "super_resolution.low_size"),
    (["train", "--data", "8gaussians", "--super-resolution", "4"], "super-resolution needs image data"),
    (["train", "--data", "digits", "--super-resolution", "4", "--set", "super_resolution.aug_max=1.5"],
     "super_resolution.aug_max"),
    (["train", "--data", "digits", "--super-resolution", "4", "--set", "super_resolution.aug_level=-0.1"],
     "super_resolution.aug_level"),
    (["train", "--data", "digits", "--set", "super_resolution.foo=1"], "super_resolution"),
    (["train", "--data", "digits", "--set", "super_resolution=3"], "super_resolution: expected a mapping"),
    (["train", "--data", "digits", "--super-resolution", "4", "--objective", "ddgan"], "objective ddgan"),
    (["train", "--data", "digits", "--super-resolution", "4", "--latent", "AE"], "stages work on pixels"),
    (["train", "--data", "digits", "--set", "net.augment=true"], "net.augment: set by super_resolution"),
])
def test_super_resolution_training_bad_input(argv, message, tmp_path, capsys):
    """Bad super-resolution settings: one line before any work, nothing written."""
    out = tmp_path / "out"
    assert main([*argv, "--out", str(out), *QUIET]) == 2
    one_line_error(capsys, message)
    assert not out.exists()


@pytest.mark.parametrize("argv, message", [
    (["sample", "--cascade", "full", "sr"], "makes images of shape [1, 8, 8]"),
    (["sample", "--cascade", "sr", "sr"], "BASE_RUN: "),
    (["sample", "--cascade", "base", "base"], "SR_RUN: "),
    (["sample", "--cascade", "base", "sr", "--aug-level", "1.5"], "--aug-level"),
    (["sample", "--cascade", "base", "sr", "--gif", "g.gif"], "--gif"),
    (["sample", "--cascade", "base", "sr", "--sampler", "ddim", "--schedule", "auto"], "with --cascade"),
    (["sample", "base", "--cascade", "base", "sr"], "--cascade names both"),
    (["sample"], "checkpoint: name the model"),
    (["sample", "base", "--aug-level", "0.1"], "--aug-level"),
    (["sample", "sr"], "is a super-resolution stage"),
    (["eval", "sr", "--n", "8"], "is a super-resolution stage"),
    (["nll", "sr"], "is a super-resolution stage"),
    (["invert", "sr", "low0.png"], "is a super-resolution stage"),
    (["upscale", "sr", "big.png"], "is 8x8; the model takes 4x4"),
    (["upscale", "sr", "rgb.png"], "colour"),
    (["upscale", "sr", "missing.png"], "no such file"),
    (["upscale", "base", "low0.png"], "SR_RUN: "),
    (["upscale", "sr", "low0.png", "--aug-level", "2"], "--aug-level"),
    (["upscale", "sr", "low0.png", "--class", "10"], "--class"),
    (["upscale", "full", "low0.png", "--class", "1"], "SR_RUN: "),
    (["upscale", "sr", "low0.png", "--threshold", "2"], "threshold"),
])
def test_cascade_bad_input_is_one_line(argv, message, runs, tmp_path, capsys):
    """A base of the wrong resolution, models in the wrong slot, an SR stage where one model is sampled, an image of
    the wrong size or channels, levels out of range: one line, nothing written."""
    names = {"full", "sr", "base", "low0.png", "big.png", "rgb.png", "missing.png"}
    argv = [str(runs / a) if a in names else a for a in argv]
    out = tmp_path / "out.png"
    capsys.readouterr()
    assert main([*argv, *(["--out", str(out)] if argv[0] in ("sample", "upscale") else [])]) == 2
    one_line_error(capsys, message)
    assert not out.exists() and not (tmp_path / "out-stages.png").exists()
