"""Latent diffusion (Rombach et al. 2022): the KL autoencoder's shapes and loss against torch.distributions, the latent
normalisation, an exact answer (data that is a linear image of a Gaussian mixture, sampled through a linear first
stage with the mixture's exact latent denoiser), the command line end to end and its one-line refusals."""
import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from denoisekit.analytic import GaussianMixture
from denoisekit.cli import main
from denoisekit.models import LoadedModel, load_model
from denoisekit.nets.vae import AutoencoderKL, LinearAutoencoder
from denoisekit.objectives.autoencoder import AutoencoderLoss, diagonal_kl, reconstruction_nll
from denoisekit.processes import DiscreteVP
from denoisekit.samplers import generate

from test_reliability import one_line_error


@pytest.mark.parametrize("mult, size", [((1, 2, 2), 7), ((1, 2), 14), ((1,), 28)])
def test_autoencoder_shapes(mult, size):
    """len(channel_mult) - 1 halvings: MNIST 28x28 to 4x7x7 or 4x14x14; the decoder returns the input's shape."""
    ae = AutoencoderKL(in_channels=1, latent_channels=4, channels=8, channel_mult=mult)
    x = torch.randn(3, 1, 28, 28)
    mean, logvar = ae.encode(x)
    assert mean.shape == logvar.shape == (3, 4, size, size) == (3, *ae.latent_shape((1, 28, 28)))
    assert ae.decode(mean, (28, 28)).shape == x.shape


def test_loss_terms_match_torch_distributions():
    """The KL to N(0, I) and the Laplace (l1) / Gaussian (l2) reconstruction NLL with a learned scale b = exp(log_b)
    agree with torch.distributions elementwise."""
    D = torch.distributions
    g = torch.Generator().manual_seed(0)
    mean, logvar = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)
    q, p = D.Normal(mean, (0.5 * logvar).exp()), D.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    assert torch.allclose(diagonal_kl(mean, logvar), D.kl_divergence(q, p), rtol=1e-12)
    x, x_hat = torch.randn(4, 6, generator=g, dtype=torch.float64), torch.randn(4, 6, generator=g, dtype=torch.float64)
    log_b = torch.tensor(-0.7, dtype=torch.float64)
    assert torch.allclose(reconstruction_nll(x, x_hat, log_b, "l1"), -D.Laplace(x_hat, log_b.exp()).log_prob(x))
    assert torch.allclose(reconstruction_nll(x, x_hat, log_b, "l2"), -D.Normal(x_hat, log_b.exp()).log_prob(x))


def test_the_loss_is_the_per_element_negative_elbo():
    """loss = rec + kl_weight KL per data element; with kl_weight 1 and the posterior's own draw, its Monte Carlo
    mean over draws is the per-element -ELBO of a linear VAE computed independently in closed form."""
    torch.manual_seed(0)
    ae = LinearAutoencoder(dim=3, latent_dim=2).double()
    with torch.no_grad():
        ae.log_b.fill_(-0.3)
    x = torch.randn(1, 3, dtype=torch.float64)
    loss = AutoencoderLoss("l2", kl_weight=1.0)
    n = 20000
    gens = [torch.Generator().manual_seed(i) for i in range(n)]
    got = loss(ae, x.expand(n, 3), None, gens).mean().detach()
    mean, logvar = ae.encode(x)
    W, c, b2 = ae.dec.weight, ae.dec.bias, math.exp(-0.6)
    # E_q ||x - W z - c||^2 = ||x - W mean - c||^2 + tr(W diag(var) W^T)
    sq = (x - mean @ W.T - c).square().sum() + (W.square() * logvar.exp()).sum()
    rec = 0.5 * sq / b2 + 3 * (-0.3 + 0.5 * math.log(2 * math.pi))
    kl = diagonal_kl(mean, logvar).sum()
    want = (rec + kl) / 3
    assert abs(float(got) - float(want)) < 0.01 * abs(float(want)), (float(got), float(want))


@pytest.mark.parametrize("per_channel", [False, True])
def test_latent_normalisation(per_channel):
    """After set_latent_norm the training latents have std 1 (one scale factor, no shift) or per-channel mean 0 and
    std 1; from_latent inverts the normalisation exactly (decode of the posterior mean)."""
    torch.manual_seed(0)
    ae = AutoencoderKL(in_channels=1, latent_channels=3, channels=8, channel_mult=(1, 2))
    x = torch.rand(64, 1, 12, 12) * 2 - 1
    with torch.no_grad():
        mean = ae.encode(x)[0]
    stats = ae.set_latent_norm(mean, per_channel)
    z = ae.to_latent(x)
    flat = z.transpose(0, 1).reshape(3, -1)
    if per_channel:
        assert torch.allclose(flat.mean(1), torch.zeros(3), atol=1e-5)
        assert torch.allclose(flat.std(1), torch.ones(3), atol=1e-4)
    else:
        assert abs(float(flat.std()) - 1) < 1e-4 and stats["shift"] == [0.0, 0.0, 0.0]
        assert len(set(stats["scale"])) == 1
    with torch.no_grad():
        assert torch.allclose(ae.from_latent(z, (12, 12)), ae.decode(mean, (12, 12)), atol=1e-5)


def weights_and_means(x: torch.Tensor, centres: torch.Tensor):
    """Component shares and means of samples assigned to the nearest centre."""
    k = torch.cdist(x, centres).argmin(1)
    w = torch.bincount(k, minlength=len(centres)).double() / len(x)
    means = torch.stack([x[k == j].mean(0) if (k == j).any() else torch.full_like(centres[0], float("nan"))
                         for j in range(len(centres))])
    return w, means


@pytest.mark.parametrize("per_channel", [False, True])
def test_latent_diffusion_of_a_linear_image_of_a_mixture_is_exact(per_channel):
    """Data x = A z + c (8-D) with z a 2-D Gaussian mixture; a linear first stage whose encoder is A's pseudo-inverse
    and whose decoder is A; the latents normalised from data; latent diffusion with the mixture's exact denoiser in the
    normalised latents, sampled and decoded through the model opener's path, reproduces the data's component weights
    (TV <= 0.03) and means (<= 0.1 x spread). A decoder that multiplies by the scale instead of dividing, or forgets
    the shift, fails it."""
    g = torch.Generator().manual_seed(0)
    mix = GaussianMixture([0.5, 0.3, 0.2], [[-1.5, 0.5], [1.0, 1.5], [0.5, -1.5]], [[0.2, 0.3], [0.25, 0.2], [0.3, 0.2]])
    A = torch.randn(8, 2, generator=g, dtype=torch.float64)
    c = torch.randn(8, generator=g, dtype=torch.float64)
    z, _ = mix.sample(20000, generator=g)
    x = (z @ A.T + c).float()
    ae = LinearAutoencoder(dim=8, latent_dim=2)
    with torch.no_grad():
        ae.enc.weight.zero_(), ae.enc.bias.zero_()
        ae.enc.bias[2:] = -20.0  # logvar: a near-deterministic code
        pinv = torch.linalg.pinv(A)
        ae.enc.weight[:2] = pinv.float()
        ae.enc.bias[:2] = -(pinv @ c).float()
        ae.dec.weight.copy_(A.float()), ae.dec.bias.copy_(c.float())
        ae.set_latent_norm(ae.encode(x)[0], per_channel)
    shift, scale = ae.latent_shift.double(), ae.latent_scale.double()
    latent_mix = GaussianMixture(mix.w, (mix.mu - shift) * scale, mix.tau * scale)
    process = DiscreteVP("linear", 1000)
    model = LoadedModel(latent_mix.denoiser(process), (2,), None, (), {"latent": {"data_shape": [8]}}, Path("."), ae)
    samples = model.decode(generate(model.denoiser, 4000, model.shape, seed=1, steps=50, sampler="ddim")).double()
    centres = mix.mu @ A.T + c
    spread = float(torch.cdist(centres, centres).max())
    w, means = weights_and_means(samples, centres)
    assert 0.5 * float((w - mix.w).abs().sum()) <= 0.03, w
    assert float((means - centres).norm(dim=1).max()) <= 0.1 * spread, (means, centres)
    assert samples.shape == (4000, 8)


def _ae_run(tmp_path, name="ae", data="digits", extra=()):
    run = tmp_path / name
    assert main(["train-autoencoder", "--data", data, "--steps", "20", "--batch-size", "16", "--out", str(run),
                 "--set", "net.channels=8", "--set", "net.channel_mult=[1,2]", "--set", "train.progress=false",
                 *extra]) == 0
    return run


def test_latent_diffusion_from_the_command_line(tmp_path, capsys):
    """train-autoencoder (report, reconstructions) -> train --latent (class-conditional, codec in every checkpoint) ->
    sample decodes to the data's size, same seed same bits -> eval and nll run; the latent model opens without the
    autoencoder's folder."""
    ae = _ae_run(tmp_path, extra=["--set", "latent_norm=channel"])
    report = json.loads((ae / "report.json").read_text())
    assert report["latent_shape"] == [4, 4, 4] and len(report["kl_per_channel"]) == 4
    assert set(report["classifier_accuracy"]) == {"data", "reconstructions"} and report["latent"]["per_channel"]
    assert (ae / "reconstructions.png").is_file()
    run = tmp_path / "latent"
    assert main(["train", "--data", "digits", "--latent", str(ae), "--set",
                 "class_cond=true", "--steps", "6", "--batch-size", "16", "--out", str(run),
                 "--set", "net.channels=16", "--set", "net.channel_mult=[1]", "--set", "train.progress=false",
                 "--set", "train.checkpoint_every=3"]) == 0
    for step in ("step-0000003", "step-0000006"):
        assert (run / "checkpoints" / step / "codec.safetensors").is_file()
    moved = tmp_path / "moved"
    (ae).rename(moved)  # the first stage travels inside the checkpoint
    model = load_model(run)
    assert model.shape == (4, 4, 4) and model.data_shape == (1, 8, 8) and model.num_classes == 10
    pngs = []
    for name in ("a.png", "b.png"):
        assert main(["sample", str(run), "--n", "4", "--steps", "5", "--sampler", "ddim", "--class", "3",
                     "--out", str(tmp_path / name), "--npz", str(tmp_path / (name + ".npz")), "--scale", "1"]) == 0
        pngs.append((tmp_path / name).read_bytes())
    assert pngs[0] == pngs[1]
    assert main(["sample", str(run), "--n", "10", "--steps", "3", "--sampler", "ddim", "--guidance", "2",
                 "--threshold", "0.99", "--out", str(tmp_path / "cfg.png")]) == 0  # CFG on labels, in latent space
    import numpy as np
    arr = np.load(tmp_path / "a.png.npz")["x"]
    assert arr.shape == (4, 1, 8, 8)
    assert main(["eval", str(run), "--n", "20", "--k", "2", "--steps", "3", "--sampler", "ddim",
                 "--json", str(tmp_path / "m.json")]) == 0
    assert "fd" in json.loads((tmp_path / "m.json").read_text())
    capsys.readouterr()
    assert main(["nll", str(run), "--n", "2", "--method", "bound", "--terms", "4", "--json",
                 str(tmp_path / "n.json")]) == 0
    assert "latent space" in capsys.readouterr().out
    assert json.loads((tmp_path / "n.json").read_text())["space"] == "latent"
    assert main(["invert", str(run), str(tmp_path / "a.png")]) == 2
    one_line_error(capsys, "latent diffusion model")


@pytest.mark.parametrize("argv, message", [
    (["train", "--data", "digits", "--latent", "NOPE"], "latent: no such autoencoder run"),
    (["train", "--data", "mnist", "--latent", "AE"], "latent: the autoencoder"),
    (["train", "--data", "digits", "--latent", "DIFF"], "is not an autoencoder run"),
    (["train-autoencoder", "--data", "digits", "--set", "net.foo=1"], "net: unknown key 'foo'"),
    (["train-autoencoder", "--data", "digits", "--set", "net.in_channels=3"], "net.in_channels: set from the data"),
    (["train-autoencoder", "--data", "digits", "--set", "latent_norm=pixel"], "latent_norm:"),
    (["train-autoencoder", "--data", "digits", "--set", "loss.kl_weight=-1"], "loss.kl_weight"),
    (["train-autoencoder", "--data", "digits", "--set", "loss.reconstruction=l3"], "loss.reconstruction"),
    (["train-autoencoder", "--data", "digits", "--set", "net.channel_mult=[]"], "net.channel_mult"),
    (["train-autoencoder", "--data", "digits", "--set", "prediction=eps"], "prediction"),
])
def test_latent_bad_input_is_one_line_before_any_work(argv, message, tmp_path, capsys, request):
    """A missing autoencoder, one trained on another data shape, a run that is not an autoencoder, and bad autoencoder
    settings: one line, nothing written."""
    ae = tmp_path / "AE"
    if "AE" in argv:
        ae = _ae_run(tmp_path, "AE")
    if "DIFF" in argv:
        assert main(["train", "--data", "8gaussians", "--steps", "1", "--out", str(tmp_path / "DIFF"),
                     "--set", "train.progress=false"]) == 0
    argv = [str(tmp_path / a) if a in ("AE", "DIFF", "NOPE") else a for a in argv]
    capsys.readouterr()
    out = tmp_path / "out"
    assert main([*argv, "--out", str(out)]) == 2
    one_line_error(capsys, message)
    assert not out.exists()
