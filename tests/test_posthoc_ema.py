"""Post-hoc EMA (Karras et al. 2024): the sigma_rel <-> gamma map against the profile's width by numerical integration,
the recursion against its unrolled step weights, reconstruction from two profiles against an EMA tracked directly,
the trainer's profiles through a resume, and `denoisekit ema` with its bad input."""
import math

import pytest
import torch
import yaml

from denoisekit import Denoiser, DiscreteVP, SimpleLoss, TrainConfig, Trainer, make_toy
from denoisekit.cli import main
from denoisekit.models import load_model
from denoisekit.nets import MLP
from denoisekit.train.posthoc_ema import (PowerEMA, gamma_to_sigma_rel, list_snapshots, power_weights, reconstruct,
                                          sigma_rel_to_gamma, solve_coefficients)


@pytest.mark.parametrize("sigma_rel", [0.03, 0.05, 0.1, 0.2])
def test_sigma_rel_is_the_width_of_the_power_profile(sigma_rel):
    """sigma_rel is the standard deviation of the profile (gamma+1) tau^gamma on [0, 1] (eq. 3): checked by numerical
    integration of that density, and the paper's own pairs (0.05 -> 16.97, 0.10 -> 6.94)."""
    gamma = sigma_rel_to_gamma(sigma_rel)
    tau = torch.linspace(0, 1, 200001, dtype=torch.float64)
    density = (gamma + 1) * tau**gamma
    mean = torch.trapezoid(tau * density, tau)
    std = torch.trapezoid((tau - mean) ** 2 * density, tau).sqrt()
    assert abs(float(torch.trapezoid(density, tau)) - 1) < 1e-6
    assert abs(float(std) - sigma_rel) < 1e-6
    assert abs(gamma_to_sigma_rel(gamma) - sigma_rel) < 1e-12
    assert abs(sigma_rel_to_gamma(0.05) - 16.97) < 0.01 and abs(sigma_rel_to_gamma(0.10) - 6.94) < 0.01


def _walk(steps, shape=(3, 4), seed=0):
    """A drifting random walk of weights: the parameter sequence theta_1..theta_T, float64."""
    g = torch.Generator().manual_seed(seed)
    steps_ = torch.randn(steps, *shape, generator=g, dtype=torch.float64) * 0.1 + 0.05
    return steps_.cumsum(0)


def _track(thetas, sigma_rels, every, folder=None):
    """Feed theta_1..theta_T to PowerEMA; snapshot every `every` steps (and at the end) into `folder`."""
    model = torch.nn.Linear(4, 3, bias=False).double()
    ema = PowerEMA(model, sigma_rels)
    for t, theta in enumerate(thetas, 1):
        model.weight.data.copy_(theta)
        ema.update(model, t)
        if folder is not None and (t % every == 0 or t == len(thetas)):
            ema.snapshot(folder, t)
    return ema


def test_power_ema_recursion_equals_its_unrolled_step_weights():
    """theta^_t = beta_t theta^_{t-1} + (1 - beta_t) theta_t with beta_t = (1-1/t)^(gamma+1) is sum_tau w_tau
    theta_tau with w_tau = (tau^(gamma+1) - (tau-1)^(gamma+1)) / t^(gamma+1): weights summing to one."""
    thetas = _walk(50)
    ema = _track(thetas, [0.05, 0.15], every=1)
    for gamma, m in zip(ema.gammas, ema.models):
        w = power_weights(gamma, 50, torch.arange(1, 51))
        assert abs(float(w.sum()) - 1) < 1e-12
        direct = torch.einsum("t,tij->ij", w, thetas)
        assert torch.allclose(m.weight, direct, rtol=0, atol=1e-12)


def test_reconstruction_from_two_profiles_matches_a_directly_tracked_ema(tmp_path):
    """With a snapshot of both profiles at every step the stored averages span every step weight, so the EMA of any
    other width is reconstructed exactly (to float tolerance); with sparse snapshots it is close, and far closer
    than either stored profile."""
    thetas = _walk(120)
    _track(thetas, [0.05, 0.1], every=1, folder=tmp_path / "dense")
    _track(thetas, [0.05, 0.1], every=10, folder=tmp_path / "sparse")
    for sigma_rel in (0.03, 0.07, 0.2):
        direct = _track(thetas, [sigma_rel], every=1).models[0].weight
        exact, report = reconstruct(tmp_path / "dense", sigma_rel)
        assert report["step"] == 120 and report["relative_residual"] < 1e-6  # sqrt of a float64 difference
        assert torch.allclose(exact["weight"], direct, rtol=0, atol=1e-9 * float(direct.abs().max()))
        close, _ = reconstruct(tmp_path / "sparse", sigma_rel)
        stored = [_track(thetas, [s], every=1).models[0].weight for s in (0.05, 0.1)]
        error = float((close["weight"] - direct).norm())
        assert error < 0.1 * min(float((s - direct).norm()) for s in stored), sigma_rel
    # at an earlier step, only the snapshots taken by then are used
    direct = _track(thetas[:60], [0.07], every=1).models[0].weight
    early, report = reconstruct(tmp_path / "dense", 0.07, step=60)
    assert report["step"] == 60 and torch.allclose(early["weight"], direct, rtol=0, atol=1e-9)


def test_least_squares_weights_are_the_best_fit():
    """The fit's residual is the distance of the reconstructed step weights from the target's, and no perturbation
    of the coefficients lowers it (the normal equations hold)."""
    snaps = [(g, t) for t in (20, 40, 60, 80) for g in (sigma_rel_to_gamma(0.05), sigma_rel_to_gamma(0.1))]
    gamma = sigma_rel_to_gamma(0.08)
    x, residual = solve_coefficients(snaps, gamma, 80)
    taus = torch.arange(1, 81)
    W = torch.stack([power_weights(g, t, taus) for g, t in snaps])
    target = power_weights(gamma, 80, taus)
    assert abs(float((x @ W - target).norm() / target.norm()) - residual) < 1e-9
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        worse = x + 1e-3 * torch.randn(len(x), generator=g, dtype=torch.float64)
        assert float((worse @ W - target).norm()) > float((x @ W - target).norm())


def _trainer(run_dir, steps, **over):
    torch.manual_seed(0)
    cfg = TrainConfig(steps=steps, batch_size=16, lr=5e-3, warmup_steps=3, progress=False, tensorboard=False,
                      checkpoint_every=6, ema_profiles=(0.05, 0.1), ema_snapshot_every=3, device="cpu", **over)
    return Trainer(Denoiser(MLP(hidden=16), DiscreteVP(), "eps"), SimpleLoss(), make_toy("moons", 128), run_dir, cfg)


def test_trainer_keeps_profiles_through_a_resume(tmp_path):
    """The profiles' snapshots of a run interrupted and resumed equal an uninterrupted run's, bit for bit."""
    straight = _trainer(tmp_path / "a", 12)
    straight.train()
    first = _trainer(tmp_path / "b", 12)
    first.train(until=8)  # a checkpoint at 6 (profiles in it) and snapshots up to 6; steps 7-8 are redone
    resumed = _trainer(tmp_path / "b", 12)
    assert resumed.resume() and resumed.step == 6
    resumed.train()
    a, b = list_snapshots(tmp_path / "a"), list_snapshots(tmp_path / "b")
    assert [(g, s) for g, s, _ in a] == [(g, s) for g, s, _ in b] and [s for _, s, _ in a][::2] == [3, 6, 9, 12]
    from safetensors.torch import load_file
    for (_, _, pa), (_, _, pb) in zip(a, b):
        for k, v in load_file(str(pa)).items():
            assert torch.equal(v, load_file(str(pb))[k]), (pa.name, k)


def _cli_run(tmp_path, profiles=True):
    cfg = tmp_path / "run.yaml"
    train = {"steps": 6, "batch_size": 8, "progress": False, "checkpoint_every": 3, "log_every": 3,
             "tensorboard": False}
    if profiles:
        train.update(ema_profiles=[0.05, 0.1], ema_snapshot_every=2)
    cfg.write_text(yaml.safe_dump({"data": "digits", "net": {"channels": 8, "channel_mult": [1, 2]}, "train": train,
                                   "sample": {"steps": 2, "n": 2}}))
    run = tmp_path / ("run" if profiles else "plain")
    assert main(["train", "--config", str(cfg), "--out", str(run)]) == 0
    return run


def test_ema_command_writes_a_run_to_sample(tmp_path, capsys):
    run = _cli_run(tmp_path)
    assert len(list_snapshots(run)) == 6  # steps 2, 4, 6 for both widths
    out = tmp_path / "run-ema"
    assert main(["ema", str(run), "--sigma-rel", "0.07", "--out", str(out)]) == 0
    assert "relative residual" in capsys.readouterr().out
    model = load_model(out)
    expected, _ = reconstruct(run, 0.07)
    for k, v in model.denoiser.state_dict().items():
        key = k.split(".", 1)[1] if k.split(".", 1)[1] in expected else k
        if key in expected:
            assert torch.equal(v, expected[key]), k
    assert main(["sample", str(out), "--n", "2", "--steps", "2", "--out", str(tmp_path / "s.png")]) == 0


def _one_line_error(capsys, argv, *words):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)


def test_ema_bad_input_is_one_line(tmp_path, capsys):
    plain = _cli_run(tmp_path, profiles=False)
    _one_line_error(capsys, ["ema", str(plain), "--sigma-rel", "0.05", "--out", str(tmp_path / "o")],
                    "no EMA profile snapshots", "train.ema_profiles")
    run = _cli_run(tmp_path)
    for bad in ("0", "0.3", "-0.1", "nan", "1"):
        _one_line_error(capsys, ["ema", str(run), "--sigma-rel", bad, "--out", str(tmp_path / "o")], "--sigma-rel",
                        "(0, 0.3)")
    _one_line_error(capsys, ["ema", str(run), "--sigma-rel", "0.05", "--out", str(run)], "--out")
    _one_line_error(capsys, ["ema", str(run), "--sigma-rel", "0.05", "--out", str(plain)], "--out", "already exists")
    _one_line_error(capsys, ["ema", str(run), "--sigma-rel", "0.05", "--step", "99", "--out", str(tmp_path / "o")],
                    "--step", "1..6")
    _one_line_error(capsys, ["ema", str(tmp_path / "nowhere"), "--sigma-rel", "0.05", "--out", str(tmp_path / "o")],
                    "not a run folder")
    assert not (tmp_path / "o").exists()
    next(iter((run / "ema_profiles").iterdir())).write_bytes(b"not safetensors")
    _one_line_error(capsys, ["ema", str(run), "--sigma-rel", "0.05", "--out", str(tmp_path / "o")], "damaged")


@pytest.mark.parametrize("key, value, words", [
    ("ema_profiles", [0.5], ("ema_profiles", "(0, 0.3)")),
    ("ema_profiles", [0.0], ("ema_profiles", "(0, 0.3)")),
    ("ema_profiles", [0.05, 0.05], ("ema_profiles", "distinct")),
    ("ema_profiles", ["wide"], ("ema_profiles",)),
    ("ema_snapshot_every", -1, ("ema_snapshot_every", ">= 0")),
    ("channels_last", "maybe", ("channels_last",)),
    ("amp", "bf16", ("amp",)),
])
def test_profile_config_bad_input_is_one_line(tmp_path, capsys, key, value, words):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"data": "digits", "train": {key: value}}))
    _one_line_error(capsys, ["train", "--config", str(cfg), "--out", str(tmp_path / "r")], *words)
    assert not (tmp_path / "r").exists()


def test_snapshot_every_defaults_to_checkpoints(tmp_path):
    t = _trainer(tmp_path, 12, )
    t.cfg.ema_snapshot_every = 0
    t.train()
    assert sorted({s for _, s, _ in list_snapshots(tmp_path)}) == [6, 12]
    assert math.isclose(t.power_ema.sigma_rels[0], 0.05)
