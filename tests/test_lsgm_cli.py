"""LSGM end to end from the command line (objective lsgm): train from an autoencoder run, sample through the prior and
the decoder, the bound in data bits/dim from `nll`; a run stopped mid-way resumes bitwise; a NaN names its term; bad
input is one line before any work."""
import json

import numpy as np
import pytest
import torch

from denoisekit.cli import main
from denoisekit.models import load_model
from denoisekit.recipes import RunConfig
from denoisekit.recipes.build import prepare_run
from denoisekit.recipes.latent import open_autoencoder
from denoisekit.samplers import SAMPLERS, generate
from denoisekit.train import Trainer
from denoisekit.train.errors import NonFiniteError
from test_latent import _ae_run
from test_reliability import one_line_error

SMALL = ["--set", "net.channels=16", "--set", "net.channel_mult=[1]", "--set", "train.progress=false"]


@pytest.fixture(scope="module")
def ae(tmp_path_factory):
    return _ae_run(tmp_path_factory.mktemp("lsgm"))


def test_lsgm_from_the_command_line(ae, tmp_path, capsys):
    """train --objective lsgm moves the VAE and the prior together; the model opens without the autoencoder's run;
    sample decodes to the data's size (same seed, same bits); nll reports the bound as the sum of its terms."""
    run = tmp_path / "joint"
    assert main(["train", "--data", "digits", "--objective", "lsgm", "--latent", str(ae), "--steps", "6",
                 "--batch-size", "16", "--out", str(run), *SMALL, "--set", "train.checkpoint_every=3"]) == 0
    model = load_model(run, ema=False)
    assert model.joint is not None and model.denoiser is model.joint.prior and model.codec is model.joint.vae
    assert model.shape == (4, 4, 4) and model.data_shape == (1, 8, 8) and model.num_classes is None
    assert model.denoiser.mixed_score == 0.5 and model.record["latent"]["joint"]
    first = open_autoencoder(ae).model  # the autoencoder's own run: the joint run trained its encoder further
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    with torch.no_grad():
        assert not torch.allclose(first.to_latent(x), model.encode(x))
    pngs = []
    for name in ("a.png", "b.png"):
        assert main(["sample", str(run), "--n", "4", "--steps", "5", "--sampler", "ddim", "--out",
                     str(tmp_path / name), "--npz", str(tmp_path / (name + ".npz")), "--scale", "1"]) == 0
        pngs.append((tmp_path / name).read_bytes())
    assert pngs[0] == pngs[1] and np.load(tmp_path / "a.png.npz")["x"].shape == (4, 1, 8, 8)
    special = ("langevin", "consistency", "ddgan", "recovery")  # need a model of their own kind
    fits = [k for k, fn in SAMPLERS.items() if isinstance(model.process, fn.family) and k not in special]
    assert len(fits) >= 15
    for name in fits:  # every sampler of the prior's family draws latents the decoder turns into images
        with torch.no_grad():
            x = model.decode(generate(model.denoiser, 2, model.shape, seed=0, steps=4, sampler=name,
                                      **({"eps": 1e-7, "n_steps": 2} if name == "ald" else {})))
        assert x.shape == (2, 1, 8, 8) and bool(x.isfinite().all()), name
    ae.rename(tmp_path / "moved")
    try:
        capsys.readouterr()
        assert main(["nll", str(run), "--n", "8", "--method", "bound", "--json", str(tmp_path / "n.json")]) == 0
        assert "CE(q || prior)" in capsys.readouterr().out
        r = json.loads((tmp_path / "n.json").read_text())
        assert r["dims"] == 64 and r["data"] == "8-bit" and r["bound_bpd"] > 0
        assert r["bound_bpd"] == pytest.approx(r["rec_bpd"] + r["neg_entropy_bpd"] + r["cross_entropy_bpd"],
                                               rel=1e-6)
        assert main(["nll", str(run), "--n", "8", "--method", "ode"]) == 2
        one_line_error(capsys, "--method: an LSGM model's likelihood is its variational bound")
        assert main(["nll", str(run), "--n", "8", "--method", "bound", "--terms", "3"]) == 2
        one_line_error(capsys, "--terms: applies to a discrete process's bound")
        assert main(["info", str(run)]) == 0
        info = json.loads(capsys.readouterr().out)
        assert info["latent"]["joint"] and info["vae_parameters"] > 0 and info["prediction"] == "eps"
        assert main(["invert", str(run), str(tmp_path / "a.png")]) == 2
        one_line_error(capsys, "latent diffusion model")
    finally:
        (tmp_path / "moved").rename(ae)


def _config(ae, **extra) -> RunConfig:
    return RunConfig.from_dict({"data": "digits", "objective": "lsgm", "latent": str(ae),
                                "net": {"channels": 16, "channel_mult": [1]},
                                "loss": {"kl_warmup": 5, "kl_min": 0.2, "lr_prior": 2.0, "vae_every": 3},
                                "train": {"steps": 8, "batch_size": 16, "checkpoint_every": 4, "progress": False,
                                          "log_every": 100}, **extra})


def _trainer(run, out) -> Trainer:
    return Trainer(run.denoiser, run.loss, run.ds, out, run.tc, config=run.record)


def test_a_joint_run_stopped_mid_way_resumes_bitwise(ae, tmp_path):
    """Stopped at step 4 and resumed, a joint run ends where an uninterrupted one does: VAE, prior (mixing logits
    included), their EMA, both optimizers and the KL warm-up's step, with the VAE's phase on every 3rd step."""
    rc = _config(ae)
    whole = _trainer(prepare_run(rc), tmp_path / "a")
    whole.train()
    first = _trainer(prepare_run(rc), tmp_path / "b")
    first.train(until=4)
    fresh = prepare_run(rc)
    with torch.no_grad():
        for p in fresh.denoiser.parameters():  # whatever the new process holds, the checkpoint's weights win
            p.add_(torch.randn_like(p))
    second = _trainer(fresh, tmp_path / "b")
    assert second.resume() and second.step == 4 and second.loss_fn.step == 4
    second.train()
    assert whole.loss_fn.kl_coeff == 1.0 and [(p.name, p.every) for p in whole.phases] == [("vae", 3), ("prior", 1)]
    for a, b in ((whole.model, second.model), (whole.ema.model, second.ema.model)):
        for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(p, q), name
    for name in ("vae", "prior"):
        sa, sb = whole.opts[name].state_dict()["state"], second.opts[name].state_dict()["state"]
        assert all(torch.equal(sa[k]["exp_avg_sq"], sb[k]["exp_avg_sq"]) for k in sa)


@pytest.mark.parametrize("breaks, term", [("decoder", "rec"), ("prior", "cross_entropy")])
def test_a_nan_in_a_term_stops_the_run_naming_it(ae, tmp_path, breaks, term):
    """A NaN in the decoder's scale or the prior's output stops before any update, naming the term it entered."""
    run = prepare_run(_config(ae))
    model = run.denoiser
    if breaks == "decoder":
        with torch.no_grad():
            model.vae.log_b.fill_(float("nan"))
    else:
        forward = model.prior.net.forward
        model.prior.net.forward = lambda *a, **k: forward(*a, **k) * float("nan")
    with pytest.raises(NonFiniteError, match=rf"not finite: [\w, ]*\b{term}\b") as e:
        _trainer(run, tmp_path / "nan").train()
    names = str(e.value).split("not finite: ")[1].split(")")[0].split(", ")
    assert ("rec" in names) == (breaks == "decoder") and "neg_entropy" not in names


@pytest.mark.parametrize("argv, message", [
    (["--objective", "lsgm"], "latent: objective lsgm trains a VAE and its latent score prior end to end"),
    (["--objective", "lsgm", "--latent", "NOPE"], "latent: no such autoencoder run"),
    (["--objective", "lsgm", "--latent", "NOPE", "--set", "loss.prior_weighting=likelihood"],
     "loss.prior_weighting: expected one of 'll', 'un', 're'"),
    (["--objective", "lsgm", "--latent", "NOPE", "--set", "loss.t_sampling=geometric"], "loss.t_sampling"),
    (["--objective", "lsgm", "--latent", "NOPE", "--set", "loss.vae_every=0"], "loss.vae_every: expected"),
    (["--objective", "lsgm", "--latent", "NOPE", "--set", "mixed_score=1.5"], "mixed_score: expected the initial"),
    (["--objective", "lsgm", "--latent", "NOPE", "--set", "mixed_score=0"], "mixed_score: expected the initial"),
    (["--objective", "lsgm", "--latent", "NOPE", "--set", "latent_init=random"], "latent_init: expected pretrained"),
    (["--set", "latent_init=scratch"], "latent_init: only objective lsgm trains the autoencoder"),
    (["--objective", "lsgm", "--latent", "NOPE", "--process", "ve"], "process.kind: LSGM's latent prior"),
    (["--objective", "lsgm", "--latent", "NOPE", "--set", "class_cond=true"], "class_cond: not available with "
     "objective lsgm"),
    (["--objective", "lsgm", "--latent", "NOPE", "--prediction", "v"], "mixed_score: mixes the eps of N(0, I)"),
    (["--process", "cld", "--objective", "hsm", "--set", "mixed_score=0.5"], "mixed_score: not available with "
     "process cld"),
])
def test_lsgm_bad_input_is_one_line_before_any_work(argv, message, tmp_path, capsys):
    """No latent codec, a weighting or time sampling that does not exist, a mixing coefficient outside (0, 1), a bad
    latent_init (or one without objective lsgm), another process, labels, a prediction the mixed score cannot take:
    one line, nothing written."""
    argv = [str(tmp_path / a) if a == "NOPE" else a for a in argv]
    out = tmp_path / "out"
    assert main(["train", "--data", "digits", *argv, "--out", str(out)]) == 2
    one_line_error(capsys, message)
    assert not out.exists()
