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


@pytest.mark.parametrize("n", [1, 6])
def test_cuda_graphs_sample_what_eager_sampling_does(n, tmp_path):
    """The network replayed from a CUDA graph recorded once for the input shape draws the eager samples, and the
    recording replays for other noise (the plumbing is checked on the CPU in test_samplers.py)."""
    from denoisekit.samplers.graphs import cuda_graphs
    d = _denoiser(2).cuda().eval()
    with torch.no_grad():
        want = generate(d, n, (1, 8, 8), seed=3, steps=12, sampler="dpmpp_2m")
        with cuda_graphs(d):
            got = generate(d, n, (1, 8, 8), seed=3, steps=12, sampler="dpmpp_2m")
            again = generate(d, n, (1, 8, 8), seed=4, steps=12, sampler="dpmpp_2m")  # the recording replayed
            assert len(d.net.graphs) == 1
    assert torch.allclose(want, got, atol=1e-5), float((want - got).abs().max())
    assert not torch.allclose(got, again)
    assert torch.allclose(again, generate(d, n, (1, 8, 8), seed=4, steps=12, sampler="dpmpp_2m"), atol=1e-5)


def test_evaluator_on_gpu_matches_cpu(tmp_path):
    from denoisekit.eval import Evaluator
    ds = load_dataset("digits")
    x = (ds.x[:400] + 0.2 * torch.randn(ds.x[:400].shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    cpu = Evaluator(ds, cache_root=tmp_path, progress=False).evaluate(x)
    gpu = Evaluator(ds, cache_root=tmp_path, device="cuda", progress=False).evaluate(x)
    assert gpu["fd"] == pytest.approx(cpu["fd"], rel=1e-3, abs=1e-5)
    assert gpu["precision"] == pytest.approx(cpu["precision"], abs=0.01)


# --- few-step generation (issue 21) on the GPU --------------------------------------------------------------------

GPU_TEACHER = ("data: digits\nnet: {channels: 8, channel_mult: [1, 2], num_res_blocks: 1, attention_levels: [1]}\n"
               "prediction: eps\ntrain: {steps: 30, batch_size: 64, progress: false, tensorboard: false, "
               "checkpoint_every: 30, log_every: 10}\nsample: {steps: 4, n: 4}\n")
QUIET = ["--set", "train.progress=false", "--set", "train.tensorboard=false"]


@pytest.fixture(scope="module")
def gpu_teacher(tmp_path_factory):
    """A small eps-prediction U-Net on 8x8 digits, trained on the GPU."""
    from denoisekit.cli import main
    root = tmp_path_factory.mktemp("gpu_teacher")
    (root / "t.yaml").write_text(GPU_TEACHER)
    assert main(["train", "--config", str(root / "t.yaml"), "--out", str(root / "run"), "--device", "cuda"]) == 0
    return root / "run"


def _losses(run):
    import csv
    with open(run / "metrics.csv") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


@pytest.mark.parametrize("amp", [False, True])
@pytest.mark.parametrize("method,extra", [("progressive", ["--stages", "2,1"]), ("consistency", [])])
def test_distillation_stages_train_on_gpu_and_the_student_samples_as_on_the_cpu(gpu_teacher, tmp_path, method, extra,
                                                                                amp):
    """`distill --device cuda` (bf16 autocast or fp32): every stage trains there with finite losses and records where
    and in what precision; the student's recorded sampling draws on the GPU what it draws on the CPU."""
    from denoisekit.cli import main
    from denoisekit.models import load_model
    from denoisekit.samplers import generate
    out = tmp_path / "student"
    assert main(["distill", "--method", method, "--teacher", str(gpu_teacher), "--out", str(out), "--steps-per-stage",
                 "20", "--device", "cuda", "--set", f"train.amp={'true' if amp else 'false'}", *QUIET, *extra]) == 0
    for stage in sorted((out / "stages").iterdir()):
        losses = _losses(stage)
        assert losses and all(torch.isfinite(torch.tensor(losses)))
    cpu, gpu = load_model(out), load_model(out, device="cuda")
    assert cpu.record["trained_in"] == {"device": "cuda", "precision": "bf16" if amp else "fp32"}
    s = cpu.record["distill"]["sampling"]
    kw = dict(seed=2, steps=s["steps"], sampler=s["sampler"], schedule=s["schedule"])
    x_cpu, x_gpu = generate(cpu.denoiser, 6, cpu.shape, **kw), generate(gpu.denoiser, 6, gpu.shape, **kw)
    assert x_gpu.is_cuda
    assert torch.allclose(x_cpu, x_gpu.cpu(), atol=2e-3), float((x_cpu - x_gpu.cpu()).abs().max())


def test_consistency_training_and_inpainting_on_gpu(gpu_teacher, tmp_path):
    """`train --objective consistency --device cuda` with bf16 learns; Alg. 4 on the GPU keeps the known pixels exactly
    and fills the rest; `edit --device cuda` runs end to end."""
    import numpy as np
    from PIL import Image

    from denoisekit.cli import main
    from denoisekit.models import load_model
    from denoisekit.samplers import consistency_inpaint, sampling_times
    cfg = tmp_path / "ct.yaml"
    cfg.write_text("data: digits\nobjective: consistency\nprediction: edm\n"
                   "process: {kind: ve, sigma_min: 0.002, sigma_max: 80.0, t_eps: 0.0327}\n"
                   "net: {channels: 8, channel_mult: [1, 2], num_res_blocks: 1, attention_levels: [1]}\n"
                   "train: {steps: 60, batch_size: 64, lr: 2e-3, amp: true, progress: false, tensorboard: false, "
                   "checkpoint_every: 60, log_every: 10}\n")
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "ct"), "--device", "cuda"]) == 0
    losses = _losses(tmp_path / "ct")
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    model = load_model(tmp_path / "ct", device="cuda")
    y = model.denoiser.process.prior_sample((4, *model.shape), None, device="cuda").clamp(-1, 1)
    mask = torch.zeros_like(y)
    mask[..., :4] = 1
    x = consistency_inpaint(model.denoiser, y, mask, sampling_times(model.denoiser.process, 2, "trailing"),
                            generator=torch.Generator().manual_seed(0))
    assert x.is_cuda and torch.equal(x[..., :4], y[..., :4]) and not torch.equal(x[..., 4:], y[..., 4:])
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8), "L").save(tmp_path / "image.png")
    m = np.zeros((8, 8), dtype=np.uint8)
    m[:, :4] = 255
    Image.fromarray(m, "L").save(tmp_path / "mask.png")
    for run in (tmp_path / "ct", gpu_teacher):
        assert main(["edit", str(run), str(tmp_path / "image.png"), "--mask", str(tmp_path / "mask.png"), "--n", "2",
                     "--steps", "4", "--device", "cuda", "--out", str(tmp_path / f"{run.name}.png")]) == 0
