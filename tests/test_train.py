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


def _worker(out, world: int, *extra: str, fsdp: bool = False) -> None:
    """tests/ddp_worker.py into `out` as one process or as `world` gloo ranks under torchrun (sharded: train.fsdp)."""
    worker = str(Path(__file__).parent / "ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path), "FSDP": str(int(fsdp))}
    env.pop("WORLD_SIZE", None)
    launch = [] if world == 1 else ["-m", "torch.distributed.run", f"--nproc_per_node={world}",
                                    "--master_addr=127.0.0.1", f"--master_port={_free_port()}"]
    subprocess.run([sys.executable, *launch, worker, str(out), "32", *extra], check=True, env=env, timeout=300)


def _same_weights(a: dict, b: dict) -> None:
    """Within float tolerance: two ranks all-reduce their half-batch gradients, a sum in another order than one
    process's over the whole batch."""
    for k in a["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], atol=1e-5, rtol=1e-4), k
        assert torch.allclose(a["ema"][k], b["ema"][k], atol=1e-5, rtol=1e-4), k


def test_ddp_two_ranks_match_one_process_with_twice_the_batch(tmp_path):
    _worker(tmp_path / "one", 1)
    _worker(tmp_path / "two", 2)
    one, two = torch.load(tmp_path / "one" / "weights.pt"), torch.load(tmp_path / "two" / "weights.pt")
    assert one["world"] == 1 and two["world"] == 2
    _same_weights(one, two)
    torch.manual_seed(0)
    init = Denoiser(MLP(hidden=32), DiscreteVP()).state_dict()
    moved = any(not torch.allclose(init[k], one["model"][k]) for k in init)
    assert moved  # the steps did change the weights


def test_a_checkpoint_resumes_on_another_number_of_processes(tmp_path):
    """Stopped at step 2 by two gloo ranks and finished by one process (and 1 -> 2), a run ends with the weights of
    an uninterrupted one-process run: the data order and the noise are functions of (seed, step, example), not of
    the world size, and the checkpoint holds the whole optimizer (float tolerance: the all-reduce's summation order)."""
    _worker(tmp_path / "one", 1)
    for first, then in ((2, 1), (1, 2)):
        out = tmp_path / f"{first}-{then}"
        _worker(out, first, "2")
        assert (out / "checkpoints" / "step-0000002").is_dir() and not (out / "weights.pt").exists()
        _worker(out, then)
        resumed = torch.load(out / "weights.pt")
        assert resumed["world"] == then
        _same_weights(torch.load(tmp_path / "one" / "weights.pt"), resumed)


def test_fsdp_shards_the_model_and_resumes_on_any_number_of_processes(tmp_path):
    """train.fsdp over two gloo ranks: each rank holds half of the parameters, and the run ends with the weights of
    one unsharded process; a sharded checkpoint finishes in one plain process and a plain one in two sharded ranks
    (whole tensors and an unsharded optimizer in every checkpoint)."""
    _worker(tmp_path / "one", 1)
    plain = torch.load(tmp_path / "one" / "weights.pt")
    _worker(tmp_path / "fsdp", 2, fsdp=True)
    sharded = torch.load(tmp_path / "fsdp" / "weights.pt")
    assert sharded["sharded"] and not plain["sharded"]
    assert sharded["share"] == pytest.approx(0.5, abs=0.01) and plain["share"] == 1.0
    _same_weights(plain, sharded)
    for first, then, sharded_first in ((2, 1, True), (1, 2, False)):
        out = tmp_path / f"{first}-{then}"
        _worker(out, first, "2", fsdp=sharded_first)
        _worker(out, then, fsdp=not sharded_first)
        resumed = torch.load(out / "weights.pt")
        assert resumed["world"] == then and resumed["sharded"] == (then == 2)
        _same_weights(plain, resumed)


def test_fsdp_refuses_what_it_cannot_shard():
    """A GAN's several optimizers, post-hoc EMA profiles and trainable parameters outside the network: one line each
    (checked before any process group exists: refused in shard() and the trainer alike)."""
    from denoisekit.train.sharding import shard

    class Extra(Denoiser):
        def __init__(self):
            super().__init__(MLP(hidden=8), DiscreteVP(), "eps")
            self.scale = torch.nn.Parameter(torch.ones(()))
    with pytest.raises(ValueError, match=r"^train.fsdp: .*outside it \(scale\)"):
        shard(Extra())

    class TwoPlayers(SimpleLoss):
        def parts(self, model):
            return {"a": (model.net.inp, 1.0), "b": (model.net.out, 1.0)}
    cfg = TrainConfig(steps=1, batch_size=8, fsdp=True, progress=False, tensorboard=False, device="cpu")
    with pytest.raises(ValueError, match=r"^train.fsdp: .*several parts \(a GAN's players\)"):
        Trainer(Denoiser(MLP(hidden=8), DiscreteVP()), TwoPlayers(), make_toy("moons", 64), "/tmp/x", cfg)


def _accumulating(out, accum: int, labelled: bool):
    """A class-conditional (or plain) MLP trained 3 steps of batch 32 in `accum` micro-batches; (weights, the
    gradient norms train_step reports)."""
    torch.manual_seed(0)
    ds = make_toy("moons", 512)
    if labelled:
        ds.y, ds.num_classes = (ds.x[:, 0] > 0).long(), 2
    cfg = TrainConfig(steps=3, batch_size=32, grad_accum=accum, lr=1e-2, warmup_steps=0, grad_clip=None,
                      progress=False, tensorboard=False, checkpoint_every=100, device="cpu", use_labels=labelled)
    trainer = Trainer(Denoiser(MLP(hidden=32, num_classes=2 if labelled else None), DiscreteVP(), "eps"),
                      SimpleLoss(p_uncond=0.2 if labelled else 0.0), ds, out, cfg)
    norms = [float(trainer.train_step()[1]) for _ in range(3)]
    return trainer.model.state_dict(), norms


@pytest.mark.parametrize("labelled", [False, True])
def test_gradient_accumulation_takes_the_whole_batchs_step(tmp_path, labelled):
    """grad_accum 4: the summed gradients of four micro-batches, each example with its own noise and label, are the
    whole batch's gradient (its norm too), so the weights match one step of the whole batch (float tolerance)."""
    whole, norms = _accumulating(tmp_path / "a", 1, labelled)
    parts, part_norms = _accumulating(tmp_path / "b", 4, labelled)
    assert part_norms == pytest.approx(norms, rel=1e-5)
    for k in whole:
        assert torch.allclose(whole[k], parts[k], atol=1e-6, rtol=1e-5), k


@pytest.mark.parametrize("over, message", [({"grad_accum": 0}, "grad_accum: expected a positive integer"),
                                           ({"grad_accum": 3}, "batch_size: 32 is not divisible by the 1 ranks x 3")])
def test_bad_gradient_accumulation_is_one_line(over, message):
    with pytest.raises(ValueError, match=message):
        Trainer(Denoiser(MLP(), DiscreteVP()), SimpleLoss(), make_toy("moons", 64), "/tmp/x",
                TrainConfig(batch_size=32, device="cpu", **over))


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
