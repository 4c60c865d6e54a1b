"""The trainer: exact resume, atomic checkpoints, EMA, learning-rate schedule, and DDP equivalence."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from denoisekit import Denoiser, DiscreteVP, SimpleLoss, TrainConfig, Trainer, make_toy
from denoisekit.nets import MLP, UNet
from denoisekit.train import EMA, find_checkpoint
from denoisekit.train.trainer import lr_at


def _trainer(run_dir, steps, dropout_net=False):
    torch.manual_seed(0)
    if dropout_net:
        net = UNet(channels=8, channel_mult=(1, 2), dropout=0.3)
        ds = make_toy("moons", 64)
        ds.x = torch.randn(64, 1, 8, 8).clamp(-1, 1)
    else:
        net, ds = MLP(hidden=32), make_toy("moons", 256)
    cfg = TrainConfig(steps=steps, batch_size=16, lr=5e-3, warmup_steps=3, lr_schedule="cosine", progress=False,
                      tensorboard=False, checkpoint_every=5, ema_decay=0.9, device="cpu")  # bitwise: CPU kernels
    return Trainer(Denoiser(net, DiscreteVP(), "v"), SimpleLoss(min_snr_gamma=5), ds, run_dir, cfg)


@pytest.mark.parametrize("dropout_net", [False, True])
def test_resume_continues_bitwise(tmp_path, dropout_net):
    straight = _trainer(tmp_path / "a", 10, dropout_net)
    straight.train()
    first = _trainer(tmp_path / "b", 10, dropout_net)
    first.train(until=5)
    torch.manual_seed(1234)  # disturb the global RNG: resume must restore it
    resumed = _trainer(tmp_path / "b", 10, dropout_net)
    assert resumed.resume() and resumed.step == 5
    resumed.train()
    for (k, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    for a, b in zip(straight.ema.model.parameters(), resumed.ema.model.parameters()):
        assert torch.equal(a, b)


def test_checkpoint_folder_is_complete_and_atomic(tmp_path):
    t = _trainer(tmp_path, 10)
    t.train()
    ckpts = sorted((tmp_path / "checkpoints").iterdir())
    names = [c.name for c in ckpts]
    assert names == ["latest", "step-0000005", "step-0000010"], names  # no temporary leftovers
    folder = find_checkpoint(tmp_path)
    assert folder.name == "step-0000010"
    assert {p.name for p in folder.iterdir()} == {"model.safetensors", "ema.safetensors", "config.json", "state.pt"}
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,loss") and len(rows) > 1


def test_ema_warmup_formula():
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    ema = EMA(model, decay=0.99)
    expected = 0.0
    for n in range(30):
        model.weight.data.fill_(float(n + 1))
        d = min(0.99, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * (n + 1)
        ema.update(model)
        assert float(ema.model.weight) == pytest.approx(expected, rel=1e-6)


def test_learning_rate_schedule():
    cfg = TrainConfig(steps=100, lr=1.0, warmup_steps=10, lr_schedule="cosine")
    assert lr_at(cfg, 0) == pytest.approx(0.1) and lr_at(cfg, 9) == pytest.approx(1.0)
    assert lr_at(cfg, 54) == pytest.approx(0.5) and lr_at(cfg, 99) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(TrainConfig(lr=2.0, warmup_steps=0), 70) == 2.0


def test_bad_train_config():
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="step")
    with pytest.raises(ValueError, match="batch_size"):
        Trainer(Denoiser(MLP(), DiscreteVP()), SimpleLoss(), make_toy("moons", 8), "/tmp/x", TrainConfig(batch_size=16))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_ranks_match_one_process_with_twice_the_batch(tmp_path):
    worker = str(Path(__file__).parent / "ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("WORLD_SIZE", None)
    subprocess.run([sys.executable, worker, str(tmp_path / "one"), "32"], check=True, env=env, timeout=300)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
                    f"--master_port={_free_port()}", worker, str(tmp_path / "two"), "32"],
                   check=True, env=env, timeout=300)
    one, two = torch.load(tmp_path / "one" / "weights.pt"), torch.load(tmp_path / "two" / "weights.pt")
    assert one["world"] == 1 and two["world"] == 2
    for k in one["model"]:
        assert torch.allclose(one["model"][k], two["model"][k], atol=1e-5, rtol=1e-4), k
        assert torch.allclose(one["ema"][k], two["ema"][k], atol=1e-5, rtol=1e-4), k
    torch.manual_seed(0)
    init = Denoiser(MLP(hidden=32), DiscreteVP()).state_dict()
    moved = any(not torch.allclose(init[k], one["model"][k]) for k in init)
    assert moved  # the steps did change the weights


def _unet_trainer(run_dir, **over):
    torch.manual_seed(0)
    ds = make_toy("moons", 64)
    ds.x = torch.randn(64, 1, 8, 8).clamp(-1, 1)
    cfg = TrainConfig(steps=3, batch_size=8, lr=1e-3, warmup_steps=0, progress=False, tensorboard=False,
                      checkpoint_every=3, device="cpu", **over)
    return Trainer(Denoiser(UNet(channels=8, channel_mult=(1, 2)), DiscreteVP(), "eps"), SimpleLoss(), ds, run_dir, cfg)


def test_amp_falls_back_to_fp32_with_a_warning_where_bf16_does_not_pay(tmp_path, monkeypatch):
    """train.amp on a CPU without avx512_bf16 / amx_bf16: fp32, said once, and recorded in the checkpoint; with the
    flags, bf16 autocast (a step on this CPU still runs, emulated)."""
    import json
    import denoisekit.utils as utils
    monkeypatch.setattr(utils, "cpu_flags", lambda: {"avx2"})
    with pytest.warns(UserWarning, match=r"train.amp: this CPU has no bf16 instructions.*training in fp32"):
        t = _unet_trainer(tmp_path / "a", amp=True)
    assert t.precision == "fp32"
    t.train()
    config = json.loads((find_checkpoint(tmp_path / "a") / "config.json").read_text())
    assert config["trained_in"] == {"device": "cpu", "precision": "fp32"}
    monkeypatch.setattr(utils, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    t = _unet_trainer(tmp_path / "b", amp=True)
    assert t.precision == "bf16"
    seen = []
    t.model.net.register_forward_hook(lambda m, i, o: seen.append(torch.is_autocast_enabled("cpu")))
    loss, _ = t.train_step()
    assert seen == [True] and torch.isfinite(loss)
    assert _unet_trainer(tmp_path / "c").precision == "fp32"  # not asked: no warning, fp32


def test_channels_last_trains_the_same_model(tmp_path):
    """NHWC memory layout changes the kernels' order of summation only: the same losses and weights to 1e-5."""
    a, b = _unet_trainer(tmp_path / "a"), _unet_trainer(tmp_path / "b", channels_last=True)
    convs = [p for p in b.model.parameters() if p.dim() == 4 and p.shape[1] > 1 and p.shape[-1] > 1]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous() for p in convs)
    for _ in range(3):
        la, _ = a.train_step()
        lb, _ = b.train_step()
        assert abs(float(la) - float(lb)) < 1e-5 * max(1.0, abs(float(la)))
    for (k, pa), pb in zip(a.model.named_parameters(), b.model.parameters()):
        assert torch.allclose(pa, pb, atol=1e-5, rtol=1e-4), k
