"""Denoising diffusion GANs (Xiao et al. 2022): the few-step schedule, the forward pairs, the two-player trainer
(phases, resume, divergence), the command line, and an exact answer where a Gaussian reverse step fails."""
import math
import tempfile

import pytest
import torch

from denoisekit.analytic import GaussianMixture
from denoisekit.cli import main
from denoisekit.data import ArrayDataset
from denoisekit.denoiser import Denoiser
from denoisekit.nets import MLP
from denoisekit.objectives import DDGAN, DDGANLoss, real_pair
from denoisekit.processes import DiscreteVP
from denoisekit.samplers import sample
from denoisekit.train import TrainConfig, Trainer
from denoisekit.train.trainer import TrainingDiverged
from denoisekit.utils import sample_generators

from test_reliability import messages, one_line_error


def test_vp_schedule_is_the_vp_sdes_alpha_bar_at_the_papers_times():
    """alpha-bar_i = exp(-0.1 u - 9.95 u^2), u_i = 1e-3 + (1 - 1e-3) i / T (Xiao et al. 2022, App. C)."""
    for T in (1, 2, 4, 8):
        u = 1e-3 + (1 - 1e-3) * torch.arange(1, T + 1, dtype=torch.float64) / T
        want = torch.exp(-0.1 * u - 9.95 * u**2)
        assert torch.allclose(DiscreteVP("vp", T).alpha_bar, want, rtol=1e-12)


def test_real_pairs_follow_the_forward_chain():
    """x_s ~ q(x_s | x0) and x_t | x_s ~ N(alpha_{t|s} x_s, sigma_{t|s}^2): by Monte Carlo, x_t's marginal is
    q(x_t | x0) and Cov(x_s, x_t) = alpha_{t|s} sigma_s^2."""
    process = DiscreteVP("vp", 4)
    n = 200_000
    x0 = torch.full((n, 1), 0.7, dtype=torch.float64)
    for t_ in (0, 2, 3):
        t, s = torch.full((n,), float(t_), dtype=torch.float64), torch.full((n,), t_ - 1.0, dtype=torch.float64)
        x_s, x_t = real_pair(process, x0, t, s, torch.Generator().manual_seed(t_))
        a_t, s_t = float(process.alpha(t[0])), float(process.sigma(t[0]))
        a_s, s_s = float(process.alpha(s[0])), float(process.sigma(s[0]))
        assert abs(float(x_t.mean()) - a_t * 0.7) < 4 * s_t / math.sqrt(n)
        assert abs(float(x_t.var()) / s_t**2 - 1) < 0.02
        cov = float(((x_s - x_s.mean()) * (x_t - x_t.mean())).mean())
        assert abs(cov - a_t / a_s * s_s**2) < 0.01 * max(s_s**2, 1e-3) + 4 * s_t / math.sqrt(n)


def gan(T: int, seed: int = 0) -> DDGAN:
    process = DiscreteVP("vp", T)
    torch.manual_seed(seed)
    return DDGAN(Denoiser(MLP(dim=2, hidden=128, depth=3, latent_dim=8), process, "x0"),
                 MLP(dim=4, hidden=128, depth=3, out_dim=1))


def settings(steps: int, **kw) -> TrainConfig:
    return TrainConfig(**{"steps": steps, "batch_size": 128, "lr": 1e-3, "lr_schedule": "cosine", "betas": (0.5, 0.9),
                          "warmup_steps": 0, "ema_decay": 0.99, "grad_clip": None, "checkpoint_every": 10**6,
                          "progress": False, "tensorboard": False, "device": "cpu", "log_every": 10**6, **kw})


MIXTURE = GaussianMixture([0.1, 0.2, 0.3, 0.4], [[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]], [0.1] * 4)


def weights_and_means(x: torch.Tensor):
    """(the share of samples nearest each component by its posterior, the worst component mean's error / spread)."""
    x = x.double()
    k = MIXTURE.log_class_posterior(x, 1.0, 0.0).argmax(1)
    w = torch.bincount(k, minlength=4).double() / len(x)
    spread = math.sqrt(float((MIXTURE.w[:, None] * (MIXTURE.mu**2 + MIXTURE.tau**2)).sum(0).sum()) / 2)
    err = max(float((x[k == j].mean(0) - MIXTURE.mu[j]).norm()) / spread if (k == j).any() else math.inf
              for j in range(4))
    return w, err


@pytest.mark.parametrize("T, lr", [(2, 3e-4), (4, 5e-4)])
def test_ddgan_reproduces_a_mixture_where_the_gaussian_reverse_step_cannot(T, lr, tmp_path):
    """On a 2-D mixture with well-separated modes, T large steps: the DDGAN's samples have the component weights
    within TV 0.05 and means within 0.2 x the spread; ancestral DDPM with the exact denoiser at the same T (the best a
    Gaussian reverse step does) puts its samples between the modes; an untrained generator fails both. 2000 steps of
    batch 128 with R1 gamma 0.5 (the learning rates as measured to work at each T; about 40 s each on 2 cores). GAN
    training is chaotic across CPUs: at T = 4, lr 1e-3 passed on one machine and reached TV 0.077 on an AMD EPYC, where
    5e-4 reaches 0.017."""
    data = MIXTURE.sample(20000, torch.Generator().manual_seed(0))[0].float()
    trainer = Trainer(gan(T), DDGANLoss(r1_gamma=0.5), ArrayDataset(data), tmp_path, settings(2000, lr=lr))
    trained = trainer.train().generator
    x_T, gens = torch.randn(4000, 2, generator=torch.Generator().manual_seed(5)), sample_generators(1, 4000)
    figures = {}
    for name, model, sampler in (("ddgan", trained, "ddgan"), ("untrained", gan(T, seed=1).generator, "ddgan"),
                                 ("ddpm exact", MIXTURE.denoiser(trained.process), "ddpm")):
        w, err = weights_and_means(sample(model, x_T, sampler=sampler, steps=T, schedule="uniform", generator=gens))
        figures[name] = (round(float(0.5 * (w - MIXTURE.w).abs().sum()), 3), round(err, 3))
    print(f"T={T}: (TV of the weights, worst mean error / spread):", figures)
    assert figures["ddgan"][0] <= 0.05 and figures["ddgan"][1] <= 0.2, figures
    assert figures["ddpm exact"][1] > 0.4, figures
    assert figures["untrained"][0] > 0.05 or figures["untrained"][1] > 0.2, figures


def test_at_one_step_a_ddgan_is_a_plain_gan():
    """T = 1, the trilemma's plain GAN: x_T is noise all but independent of the data (alpha-bar 4e-5) and the one
    step returns G(x_T, z)'s x0' itself (beta-tilde_0 = 0), with z drawn first from the sample's generator."""
    from denoisekit.conditioning import with_latent
    model = gan(1).generator
    assert float(model.process.alpha_bar[0]) < 1e-4
    x_T = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    x = sample(model, x_T, sampler="ddgan", steps=1, schedule="uniform", generator=torch.Generator().manual_seed(3))
    z = torch.randn(5, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        x0 = model(x_T, torch.zeros(5, dtype=torch.float64), with_latent(None, z)).x0
    assert torch.allclose(x, x0, atol=1e-6)
    x_s, t = torch.randn(4, 2), torch.zeros(4, dtype=torch.float64)
    for T, reads in ((1, False), (2, True)):  # a plain GAN's D(x0) does not see the generator's input noise
        players, g = gan(T), torch.Generator().manual_seed(1)
        with torch.no_grad():
            a, b = (players.discriminate(x_s, torch.randn(4, 2, generator=g), t) for _ in range(2))
        assert torch.equal(a, b) != reads, T


def test_a_ddgan_run_resumes_bitwise_with_both_players_and_optimizers(tmp_path):
    """Stopped at step 6 and resumed, a run ends where an uninterrupted one does: both players' weights, their EMA
    and both Adam states (lazy R1 every 3 steps, so a phase that skips steps is resumed too)."""
    data = MIXTURE.sample(2000, torch.Generator().manual_seed(0))[0].float()
    loss = lambda: DDGANLoss(r1_gamma=0.5, r1_every=3)  # noqa: E731
    whole = Trainer(gan(2), loss(), ArrayDataset(data), tmp_path / "a", settings(12, checkpoint_every=6))
    whole.train()
    first = Trainer(gan(2), loss(), ArrayDataset(data), tmp_path / "b", settings(12, checkpoint_every=6))
    first.train(until=6)
    second = Trainer(gan(2, seed=9), loss(), ArrayDataset(data), tmp_path / "b", settings(12, checkpoint_every=6))
    assert second.resume() and second.step == 6
    second.train()
    assert [p.name for p in whole.phases] == ["discriminator", "r1", "generator"]
    for a, b in ((whole.model, second.model), (whole.ema.model, second.ema.model)):
        for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(p, q), name
    for name in ("generator", "discriminator"):
        sa, sb = whole.opts[name].state_dict()["state"], second.opts[name].state_dict()["state"]
        assert all(torch.equal(sa[k]["exp_avg_sq"], sb[k]["exp_avg_sq"]) for k in sa)


def test_the_players_train_only_their_own_parameters():
    """The discriminator phase moves only D, the generator phase only G (each its own optimizer)."""
    data = MIXTURE.sample(512, torch.Generator().manual_seed(0))[0].float()
    with tempfile.TemporaryDirectory() as d:
        tr = Trainer(gan(2), DDGANLoss(), ArrayDataset(data), d, settings(100))
        tr.phases = tr.phases[:1]  # the discriminator's phase alone
        g0 = [p.clone() for p in tr.model.generator.parameters()]
        d0 = [p.clone() for p in tr.model.discriminator.parameters()]
        tr.train_step()
        assert all(torch.equal(a, b) for a, b in zip(g0, tr.model.generator.parameters()))
        assert not all(torch.equal(a, b) for a, b in zip(d0, tr.model.discriminator.parameters()))


def test_a_collapsed_discriminator_stops_the_run_in_one_line_keeping_the_last_checkpoint(tmp_path, capsys):
    """A discriminator loss below collapse_loss for collapse_steps steps in a row stops training with the reason."""
    data = MIXTURE.sample(512, torch.Generator().manual_seed(0))[0].float()
    tr = Trainer(gan(2), DDGANLoss(collapse_loss=100.0, collapse_steps=5), ArrayDataset(data), tmp_path,
                 settings(20, checkpoint_every=2))
    with pytest.raises(TrainingDiverged, match=r"step 5: the discriminator's loss stayed below "
                                               r"loss.collapse_loss=100 for 5 steps .*step-0000004, is kept"):
        tr.train()
    args = ["train", "--data", "8gaussians", "--objective", "ddgan", "--steps", "20", "--out", str(tmp_path / "run"),
            "--set", "loss.collapse_loss=100", "--set", "loss.collapse_steps=3", "--set", "train.checkpoint_every=2",
            "--set", "train.device=cpu"]
    assert main(args) == 2
    one_line_error(capsys, "train: step 3: the discriminator's loss stayed below", "step-0000002, is kept")
    assert (tmp_path / "run" / "checkpoints" / "step-0000002").is_dir()


def test_ddgan_from_the_command_line_class_conditional(tmp_path, capsys):
    """`train --objective ddgan` on labelled images: a class-conditional generator and discriminator, sampled by
    `sample` in T steps of sampler ddgan by default (same seed, same bits), and with a class."""
    run = tmp_path / "run"
    assert main(["train", "--data", "digits", "--objective", "ddgan", "--steps", "4", "--batch-size", "8",
                 "--out", str(run), "--set", "class_cond=true", "--set", "process.T=2", "--set", "net.channels=8",
                 "--set", "net.channel_mult=[1]", "--set", "discriminator.channels=8",
                 "--set", "discriminator.channel_mult=[1,2]", "--set", "train.device=cpu"]) == 0
    from denoisekit.models import load_model
    m = load_model(run)
    assert m.num_classes == 10 and m.denoiser.latent_dim == 32 and m.denoiser.process.T == 2
    for name in ("a.png", "b.png"):
        assert main(["sample", str(run), "--n", "4", "--class", "3", "--out", str(tmp_path / name)]) == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert main(["sample", str(run), "--n", "4", "--sampler", "ddim", "--steps", "2",
                 "--out", str(tmp_path / "c.png")]) == 2
    assert "sample it with sampler ddgan" in messages(capsys.readouterr().err)[-1]


BAD = [
    (["--process", "ve"], "objective: ddgan takes a few large steps of a discrete process; it needs process.kind ddpm"),
    (["--set", "loss.r1_gamma=-1"], "loss.r1_gamma: expected a number >= 0"),
    (["--set", "loss.r1_every=0"], "loss.r1_every: expected a positive integer"),
    (["--set", "process.schedule=linear"], "process.T: the linear schedule (betas scaled by 1000/T) needs T >= 20, got T=4"),
    (["--prediction", "eps"], "prediction: a DDGAN generator predicts x0"),
    (["--set", "net.latent_dim=0"], "net.latent_dim: a DDGAN generator reads a latent z"),
    (["--set", "discriminator.latent_dim=3"], "discriminator.latent_dim: a discriminator reads no latent"),
    (["--set", "discriminator.hiden=3"], "discriminator: unknown key 'hiden'"),
    (["--set", "learned_variance=true"], "learned_variance: a DDGAN generator samples x0 through its latent"),
]


@pytest.mark.parametrize("extra, message", BAD)
def test_ddgan_refuses_bad_input_in_one_line_before_any_work(extra, message, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", "8gaussians", "--objective", "ddgan", "--out", str(run), *extra]) == 2
    one_line_error(capsys, message)
    assert not run.exists()


@pytest.mark.parametrize("extra, message", [
    (["--set", "net.latent_dim=4"], "net.latent_dim: only a DDGAN generator reads a latent z"),
    (["--set", "discriminator.hidden=4"], "discriminator: only objective ddgan trains a discriminator"),
])
def test_ddgan_settings_are_refused_for_other_objectives(extra, message, tmp_path, capsys):
    assert main(["train", "--data", "8gaussians", "--out", str(tmp_path / "run"), *extra]) == 2
    one_line_error(capsys, message)
