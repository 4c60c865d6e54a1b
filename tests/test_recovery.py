"""Diffusion recovery likelihood (Gao et al. 2021): the paper's levels, the Langevin chain against a closed-form
conditional, an exact answer on a mixture at 6 levels, the command line and its one-line refusals."""
import math

import pytest
import torch

from denoisekit.cli import main
from denoisekit.data import ArrayDataset
from denoisekit.nets import MLP
from denoisekit.objectives import LangevinChain, RecoveryEBM, RecoveryLoss, recover
from denoisekit.processes import DiscreteVP
from denoisekit.samplers import sample
from denoisekit.train import TrainConfig, Trainer
from denoisekit.utils import sample_generators

from test_ddgan import MIXTURE, weights_and_means
from test_reliability import messages, one_line_error


def test_drl_levels_read_the_1000_step_linear_schedule():
    """T = 6: alpha-bar at steps 100, 200, 300, 400, 500 and 1000 of beta linear in [1e-4, 0.02] (Gao et al. 2021);
    T = 3: at steps 250, 500 and 1000."""
    ab = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
    for T, steps in ((6, [100, 200, 300, 400, 500, 1000]), (3, [250, 500, 1000])):
        assert torch.allclose(DiscreteVP("drl", T).alpha_bar, ab[torch.tensor(steps) - 1], rtol=1e-12)
    with pytest.raises(ValueError, match="T: the drl schedule"):
        DiscreteVP("drl", 1)


class Quadratic(torch.nn.Module):
    """f~(x, t) = -s_t^2 (x - m)^2 / (2 v), s_t = b sigma_t: an energy model whose every level is N(m, v) in x."""

    def __init__(self, process, m: float, v: float, b: float):
        super().__init__()
        self.process, self.m, self.v, self.b = process, m, v, b

    def forward(self, x, c_noise, cond=None):
        t = c_noise.to(torch.float64)  # a discrete process's network time is t itself
        s2 = (self.b**2 * self.process.transition_variance(t, t - 1)).to(x.dtype)
        return (-s2[:, None] * (x - self.m) ** 2 / (2 * self.v)).sum(1, keepdim=True)


def test_a_long_chain_samples_the_closed_form_conditional():
    """With a Gaussian level marginal N(m, v), p(x_{t-1} | x_t) is Gaussian with precision 1/v + a^2/sigma^2 and mean
    (m/v + a x_t/sigma^2) / precision; a long chain with a small step reaches it (mean and variance by Monte Carlo). A
    wrong sign or scale of the recovery term, or of the step's noise, moves both."""
    process = DiscreteVP("drl", 6)
    chain = LangevinChain(600, 0.1)
    m, v, n = 0.8, 0.3, 10000
    for t_ in (1, 4):
        t = torch.full((n,), float(t_), dtype=torch.float64)
        model = RecoveryEBM(Quadratic(process, m, v, chain.b), process, chain.steps, chain.b)
        x_t = torch.full((n, 1), -0.5, dtype=torch.float64)
        x = recover(model, process, x_t, t, chain, generator=torch.Generator().manual_seed(t_))
        a = float(process.alpha(t[0]) / process.alpha(t[0] - 1))
        s2 = float(process.transition_variance(t[0], t[0] - 1))
        prec = 1 / v + a**2 / s2
        mean, var = (m / v + a * -0.5 / s2) / prec, 1 / prec
        assert abs(float(x.mean()) - mean) < 0.02 * math.sqrt(var) + 4 * math.sqrt(var / n), (t_, float(x.mean()), mean)
        assert abs(float(x.var()) / var - 1) < 0.05, (t_, float(x.var()), var)


def ebm(seed: int = 0, steps: int = 30) -> RecoveryEBM:
    torch.manual_seed(seed)
    return RecoveryEBM(MLP(dim=2, hidden=128, depth=3, out_dim=1), DiscreteVP("drl", 6), steps, 0.0141)


def settings(steps: int, **kw) -> TrainConfig:
    return TrainConfig(**{"steps": steps, "batch_size": 128, "lr": 1e-3, "lr_schedule": "cosine", "warmup_steps": 0,
                          "ema_decay": 0.99, "grad_clip": None, "checkpoint_every": 10**6, "progress": False,
                          "tensorboard": False, "device": "cpu", "log_every": 10**6, **kw})


def test_recovery_ebm_reproduces_a_mixture_at_six_levels(tmp_path):
    """The paper's 6 levels on the 2-D mixture of four well-separated modes: the component weights within TV 0.05
    and every mean within 0.2 x the spread; an untrained energy fails. Chains of 10 steps, 1000 training steps of batch
    128 (about 35 s on 2 cores; TV 0.023 / 0.013 / 0.014 at training seeds 0 / 1 / 2, 0.017 with 15-step chains)."""
    data = MIXTURE.sample(20000, torch.Generator().manual_seed(0))[0].float()
    trainer = Trainer(ebm(steps=10), RecoveryLoss(10, 0.0141), ArrayDataset(data), tmp_path, settings(1000))
    trained = trainer.train()
    x_T, gens = torch.randn(4000, 2, generator=torch.Generator().manual_seed(5)), sample_generators(1, 4000)
    figures = {}
    for name, model in (("recovery", trained), ("untrained", ebm(seed=1, steps=10))):
        w, err = weights_and_means(sample(model, x_T, sampler="recovery", steps=6, schedule="uniform",
                                          generator=gens))
        figures[name] = (round(float(0.5 * (w - MIXTURE.w).abs().sum()), 3), round(err, 3))
    print("(TV of the weights, worst mean error / spread):", figures)
    assert figures["recovery"][0] <= 0.05 and figures["recovery"][1] <= 0.2, figures
    assert figures["untrained"][0] > 0.05 or figures["untrained"][1] > 0.2, figures


def test_recovery_from_the_command_line_on_images_class_conditional(tmp_path, capsys):
    """`train --objective recovery` on labelled images: the encoder energy with labels; `sample` runs the 6 levels by
    default (same seed, same bits; 6 x K evaluations), `--opt langevin_steps=2` shortens the chains; a denoiser's
    sampler, a skipped level, guidance and the denoiser-only commands are refused in one line."""
    run = tmp_path / "run"
    assert main(["train", "--data", "digits", "--objective", "recovery", "--steps", "3", "--batch-size", "8",
                 "--out", str(run), "--set", "class_cond=true", "--set", "net.channels=8",
                 "--set", "net.channel_mult=[1,2]", "--set", "loss.langevin_steps=3",
                 "--set", "train.device=cpu"]) == 0
    from denoisekit.models import load_model
    m = load_model(run)
    assert isinstance(m.denoiser, RecoveryEBM) and m.num_classes == 10 and m.denoiser.chain.steps == 3
    capsys.readouterr()
    for name in ("a.png", "b.png"):
        assert main(["sample", str(run), "--n", "4", "--class", "3", "--out", str(tmp_path / name)]) == 0
    assert "18 network evaluations" in capsys.readouterr().out
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert main(["sample", str(run), "--n", "4", "--opt", "langevin_steps=2", "--out", str(tmp_path / "c.png")]) == 0
    assert "12 network evaluations" in capsys.readouterr().out
    for args, message in (
            (["sample", str(run), "--sampler", "ddim", "--steps", "6"], "sampler 'ddim': this model (RecoveryEBM) "
                                                                        "has no denoiser for it"),
            (["sample", str(run), "--sampler", "recovery", "--steps", "3"], "steps: a recovery-likelihood EBM runs "
                                                                            "each of its 6 trained levels"),
            (["sample", str(run), "--opt", "noise_scale=-1"], "noise_scale: expected a number in [0, 2]"),
            (["sample", str(run), "--opt", "langevin_steps=0"], "langevin_steps: expected a positive integer"),
            (["sample", str(run), "--guidance", "2"], "--guidance: "),
            (["nll", str(run)], "checkpoint: "),
            (["invert", str(run), str(tmp_path / "a.png")], "checkpoint: "),
            (["distill", "--teacher", str(run), "--out", str(tmp_path / "d")], "--teacher: ")):
        assert main(args) == 2, args
        err = messages(capsys.readouterr().err)[-1]
        assert message in err and ("no denoiser" in err or "sample" in args[0]), err


def test_the_recovery_sampler_refuses_a_denoiser(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", "8gaussians", "--steps", "2", "--out", str(run), "--process", "vp",
                 "--set", "train.device=cpu"]) == 0
    capsys.readouterr()
    assert main(["sample", str(run), "--sampler", "recovery", "--steps", "6", "--out", str(tmp_path / "s.png")]) == 2
    one_line_error(capsys, "sampler 'recovery': needs an energy model trained by objective recovery")


BAD = [
    (["--process", "ve"], "objective: recovery likelihood learns p(x_(t-1) | x_t) over the levels of a discrete "
                          "process; it needs process.kind ddpm"),
    (["--set", "process.schedule=cosine", "--set", "process.T=1"], "process.T: a recovery-likelihood EBM needs at "
                                                                    "least 2 levels"),
    (["--set", "process.T=1"], "process.T: the drl schedule reads 1000 linear steps at T levels"),
    (["--set", "loss.langevin_steps=0"], "loss.langevin_steps: expected a positive integer"),
    (["--set", "loss.step_size=0"], "loss.step_size: expected a positive number b"),
    (["--set", "net.latent_dim=3"], "net.latent_dim: an energy network reads no latent"),
    (["--set", "net.channel_mul=3"], "net: unknown key 'channel_mul'"),
    (["--set", "learned_variance=true"], "learned_variance: a recovery-likelihood EBM learns an energy per level"),
    (["--set", "clip_x0=1"], "clip_x0: a recovery-likelihood EBM predicts no x0"),
    (["--set", "sample.steps=3"], "sample.steps: a recovery-likelihood EBM runs each of its 6 trained levels"),
]


@pytest.mark.parametrize("extra, message", BAD)
def test_recovery_refuses_bad_input_in_one_line_before_any_work(extra, message, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", "8gaussians", "--objective", "recovery", "--out", str(run), *extra]) == 2
    one_line_error(capsys, message)
    assert not run.exists()
