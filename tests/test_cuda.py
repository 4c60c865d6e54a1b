"""The CUDA path: a real training step (bf16 autocast, torch.compile), sampling and evaluation agree with the CPU.
Skipped on machines without a GPU (CI has none); run on a GPU machine with `pytest tests/test_cuda.py`."""
import pytest
import torch

from denoisekit import Denoiser, DiscreteVP, SimpleLoss, TrainConfig, Trainer, UNet, generate
from denoisekit.data import ArrayDataset, load_dataset

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _denoiser(seed=0):
    torch.manual_seed(seed)
    return Denoiser(UNet(in_channels=1, channels=16, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(1,)),
                    DiscreteVP(), "eps")


@pytest.mark.parametrize("amp,compile", [(False, False), (True, False), (True, True)])
def test_training_steps_on_gpu(tmp_path, amp, compile):
    ds = ArrayDataset(load_dataset("digits").x[:512], name="digits")
    cfg = TrainConfig(steps=60, batch_size=64, lr=2e-3, warmup_steps=5, device="cuda", amp=amp, compile=compile,
                      progress=False, tensorboard=False, checkpoint_every=60, log_every=20)
    trainer = Trainer(_denoiser(), SimpleLoss(), ds, tmp_path, cfg)
    first = float(trainer.train_step()[0])
    trainer.train()
    rows = (tmp_path / "metrics.csv").read_text().splitlines()[1:]
    last = float(rows[-1].split(",")[1])
    assert next(trainer.model.parameters()).is_cuda and torch.isfinite(torch.tensor(last))
    assert last < first  # it learns
    assert (tmp_path / "checkpoints" / "latest").exists()


def test_sampling_on_gpu_matches_cpu():
    """Noise is drawn on the CPU from per-sample generators, so the GPU draws the same samples up to rounding."""
    d = _denoiser(1).eval()
    x_cpu = generate(d, 6, (1, 8, 8), seed=3, steps=25)
    x_gpu = generate(d.cuda(), 6, (1, 8, 8), seed=3, steps=25)
    assert x_gpu.is_cuda
    assert torch.allclose(x_cpu, x_gpu.cpu(), atol=2e-3), float((x_cpu - x_gpu.cpu()).abs().max())


def test_evaluator_on_gpu_matches_cpu(tmp_path):
    from denoisekit.eval import Evaluator
    ds = load_dataset("digits")
    x = (ds.x[:400] + 0.2 * torch.randn(ds.x[:400].shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    cpu = Evaluator(ds, cache_root=tmp_path, progress=False).evaluate(x)
    gpu = Evaluator(ds, cache_root=tmp_path, device="cuda", progress=False).evaluate(x)
    assert gpu["fd"] == pytest.approx(cpu["fd"], rel=1e-3, abs=1e-5)
    assert gpu["precision"] == pytest.approx(cpu["precision"], abs=0.01)
