"""diffusers models in: a randomly initialised UNet2DModel saved as a DDIM or DDPM pipeline (or as a model folder with
its scheduler config) opens with load_model and every command; our DDIM and DDPM on it equal diffusers' own pipelines
with the same noise; scheduler configs map to our process exactly; what does not map is one line."""
import json

import numpy as np
import pytest
import torch

from denoisekit.cli import main
from denoisekit.interop.diffusers import diffusers_betas
from denoisekit.models import load_model
from denoisekit.samplers import sample
from test_reliability import one_line_error

diffusers = pytest.importorskip("diffusers", reason="diffusers is an optional extra (pip install diffusers)")

SHAPE = (1, 8, 8)


def tiny_unet(out_channels: int = 1, num_class_embeds=None):
    torch.manual_seed(0)
    return diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=out_channels, layers_per_block=1,
                                 block_out_channels=(16, 32), down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=8,
                                 num_class_embeds=num_class_embeds)


def pipeline_images(pipe, n: int, seed: int, **kw) -> torch.Tensor:
    """A diffusers pipeline's output as a (n, C, H, W) tensor in [0, 1]."""
    out = pipe(batch_size=n, generator=torch.Generator().manual_seed(seed), output_type="np", **kw).images
    return torch.from_numpy(np.asarray(out)).permute(0, 3, 1, 2)


def to_unit(x: torch.Tensor) -> torch.Tensor:
    return (x / 2 + 0.5).clamp(0, 1)


@pytest.fixture(scope="module")
def unet():
    return tiny_unet()


@pytest.mark.parametrize("clip", [False, True])
def test_our_ddim_on_a_diffusers_pipeline_equals_its_own(unet, tmp_path, clip):
    """DDIMPipeline (eta 0, leading spacing, final alpha 1) against our ddim on the opened folder, same x_T: 1e-5.
    With clip_sample, diffusers' DDIM keeps the unclipped eps unless use_clipped_model_output; ours recomputes eps
    from the clipped x0, which is that option."""
    sched = diffusers.DDIMScheduler(clip_sample=clip, set_alpha_to_one=True, timestep_spacing="leading")
    diffusers.DDIMPipeline(unet, sched).save_pretrained(tmp_path / "pipe")
    model = load_model(tmp_path / "pipe")
    assert model.shape == SHAPE and model.denoiser.prediction == "eps" and model.denoiser.clip_x0 == (1.0 if clip
                                                                                                     else None)
    ref = pipeline_images(diffusers.DDIMPipeline.from_pretrained(tmp_path / "pipe"), 4, 3, num_inference_steps=10,
                          eta=0.0, use_clipped_model_output=clip)
    x_T = torch.randn((4, *SHAPE), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours = to_unit(sample(model.denoiser, x_T, "ddim", 10, "leading"))
    assert (ours - ref).abs().max() < 1e-5


@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
def test_our_ddpm_on_a_diffusers_pipeline_equals_its_own_with_the_same_noise(unet, tmp_path, variance):
    """DDPMPipeline at 10 leading steps against our ddpm (beta_tilde for fixed_small, beta for fixed_large) drawing
    its noise from the generator that drew x_T, in diffusers' order: 1e-5."""
    sched = diffusers.DDPMScheduler(clip_sample=False, variance_type=variance)
    diffusers.DDPMPipeline(unet, sched).save_pretrained(tmp_path / "pipe")
    model = load_model(tmp_path / "pipe")
    ref = pipeline_images(diffusers.DDPMPipeline.from_pretrained(tmp_path / "pipe"), 3, 7, num_inference_steps=10)
    g = torch.Generator().manual_seed(7)
    x_T = torch.randn((3, *SHAPE), generator=g)
    with torch.no_grad():
        ours = to_unit(sample(model.denoiser, x_T, "ddpm", 10, "leading", generator=g,
                              variance="beta_tilde" if variance == "fixed_small" else "beta"))
    assert (ours - ref).abs().max() < 1e-5


@pytest.mark.parametrize("cfg", [
    {"beta_schedule": "linear"}, {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012},
    {"beta_schedule": "squaredcos_cap_v2"}, {"beta_schedule": "linear", "num_train_timesteps": 200},
    {"beta_schedule": "linear", "rescale_betas_zero_snr": True, "prediction_type": "v_prediction"},
    {"trained_betas": list(np.linspace(1e-4, 0.02, 100))},
])
def test_a_scheduler_config_maps_to_our_process_exactly(cfg, tmp_path):
    """Our alpha-bar from the config equals the scheduler's own alphas_cumprod (float32) everywhere."""
    sched = diffusers.DDPMScheduler(**cfg)
    unet = tiny_unet()
    unet.save_pretrained(tmp_path / "m")
    sched.save_pretrained(tmp_path / "m")
    model = load_model(tmp_path / "m")
    ours = model.process.alpha_bar
    assert len(ours) == len(sched.alphas_cumprod) and torch.allclose(ours, sched.alphas_cumprod.double(), atol=2e-6)
    assert torch.allclose(model.process.betas, sched.betas.double(), atol=1e-6)
    if not cfg.get("rescale_betas_zero_snr"):  # as diffusers computes them, before any rescaling
        assert torch.allclose(diffusers_betas(dict(sched.config)), sched.betas.double(), atol=1e-7)
    assert model.denoiser.prediction == {"epsilon": "eps", "v_prediction": "v"}[sched.config.prediction_type]


def test_learned_variance_and_class_labels_map(tmp_path):
    """learned_range: the UNet's second half of channels is our v; class embeddings take our labels."""
    unet = tiny_unet(out_channels=2, num_class_embeds=3)
    unet.save_pretrained(tmp_path / "m")
    diffusers.DDPMScheduler(variance_type="learned_range").save_pretrained(tmp_path / "m")
    model = load_model(tmp_path / "m")
    assert model.denoiser.learned_variance and model.num_classes == 3
    x, t = torch.randn(2, *SHAPE), torch.tensor([500.0, 10.0], dtype=torch.float64)
    with torch.no_grad():
        out = unet(x, t.float(), class_labels=torch.tensor([0, 2])).sample
        pred = model.denoiser(x, t, torch.tensor([0, 2]), clip=False)
    assert torch.allclose(pred.eps, out[:, :1], atol=1e-6) and torch.allclose(pred.v, (out[:, 1:] + 1) / 2, atol=1e-6)


def test_every_command_opens_a_diffusers_folder(unet, tmp_path, capsys):
    diffusers.DDIMPipeline(unet, diffusers.DDIMScheduler()).save_pretrained(tmp_path / "pipe")
    assert main(["sample", str(tmp_path / "pipe"), "--n", "4", "--steps", "5", "--sampler", "dpmpp_2m",
                 "--out", str(tmp_path / "a.png"), "--npz", str(tmp_path / "a.npz")]) == 0
    assert np.load(tmp_path / "a.npz")["x"].shape == (4, *SHAPE)
    assert main(["invert", str(tmp_path / "pipe"), str(tmp_path / "a.png"), "--steps", "5",
                 "--out", str(tmp_path / "inv.npz")]) == 0
    capsys.readouterr()
    assert main(["info", str(tmp_path / "pipe")]) == 0
    assert json.loads(capsys.readouterr().out)["parameters"] == sum(p.numel() for p in unet.parameters())


@pytest.mark.parametrize("make, message", [
    ("empty", "or a diffusers UNet2DModel folder"),
    ("sigmoid", "scheduler_config.json: beta_schedule 'sigmoid' does not map"),
    ("thresholding", "scheduler_config.json: thresholding: true does not map"),
    ("learned", "scheduler_config.json: variance_type 'learned' does not map"),
    ("channels", "outputs 1 channels; with variance_type learned_range"),
    ("no-scheduler", "without a scheduler_config.json beside it"),
    ("other-pipeline", "is a diffusers 'StableDiffusionPipeline' pipeline"),
    ("other-model", "holds a diffusers 'UNet2DConditionModel'"),
])
def test_what_does_not_map_is_one_line(make, message, tmp_path, capsys):
    folder = tmp_path / "m"
    folder.mkdir()
    cfg = {"sigmoid": {"beta_schedule": "sigmoid"}, "thresholding": {"thresholding": True},
           "learned": {"variance_type": "learned"}, "channels": {"variance_type": "learned_range"}}
    if make in cfg or make == "no-scheduler":
        tiny_unet().save_pretrained(folder)
    if make in cfg:
        config = {"_class_name": "DDPMScheduler", **cfg[make]}
        (folder / "scheduler_config.json").write_text(json.dumps(config))
    if make == "other-pipeline":
        (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline",
                                                             "unet": ["diffusers", "UNet2DConditionModel"]}))
    if make == "other-model":
        (folder / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    assert main(["sample", str(folder), "--n", "2", "--steps", "2", "--out", str(tmp_path / "x.png")]) == 2
    one_line_error(capsys, message)
    assert not (tmp_path / "x.png").exists()


def test_without_diffusers_the_error_names_the_extra(unet, tmp_path, monkeypatch, capsys):
    import builtins
    diffusers.DDIMPipeline(unet, diffusers.DDIMScheduler()).save_pretrained(tmp_path / "pipe")
    real_import = builtins.__import__

    def no_diffusers(name, *args, **kwargs):
        if name == "diffusers" or name.startswith("diffusers."):
            raise ImportError("No module named 'diffusers'")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_diffusers)
    assert main(["sample", str(tmp_path / "pipe"), "--n", "2", "--out", str(tmp_path / "x.png")]) == 2
    one_line_error(capsys, "needs the diffusers package: pip install 'denoisekit[diffusers]'")


# --- ours out ---------------------------------------------------------------------------------------------------
WIDE = ["--set", "net.channels=128", "--set", "net.channel_mult=[1,1]", "--set", "net.attention_levels=[1]",
        "--set", "train.progress=false", "--set", "sample.steps=2", "--set", "sample.n=2"]


def test_an_exported_unet_computes_ours():
    """Our U-Net (perturbed away from its zero-initialised layers; labels, attention, scale-shift blocks) and the
    UNet2DModel export writes give the same output."""
    from denoisekit.interop.export import unet_config, unet_state_dict
    from denoisekit.nets import UNet
    cfg = {"channels": 128, "channel_mult": [1, 1], "num_res_blocks": 1, "attention_levels": [1], "num_classes": 3}
    torch.manual_seed(0)
    net = UNet(in_channels=1, **cfg)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    unet = diffusers.UNet2DModel(**unet_config(net, cfg, SHAPE))
    assert unet.load_state_dict(unet_state_dict(net, cfg), strict=True)
    x, t, y = torch.randn(4, *SHAPE), torch.tensor([0.0, 10.0, 500.0, 999.0]), torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        ours, theirs = net(x, t, y), unet(x, t, class_labels=y).sample
    assert ours.abs().mean() > 0.1 and (ours - theirs).abs().max() < 1e-5 * max(1.0, float(ours.abs().max()))


def test_export_from_the_command_line_samples_ours_in_ddpm_pipeline(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--data", "digits", "--steps", "3", "--batch-size", "16", "--lr", "0.01", "--out", str(run),
                 *WIDE]) == 0
    out = tmp_path / "pipe"
    assert main(["export", str(run), "--to", "diffusers", str(out)]) == 0
    ours_model = load_model(run)
    pipe = diffusers.DDPMPipeline.from_pretrained(out)
    ref = pipeline_images(pipe, 3, 7, num_inference_steps=10)
    g = torch.Generator().manual_seed(7)
    x_T = torch.randn((3, *SHAPE), generator=g)
    with torch.no_grad():
        ours = to_unit(sample(ours_model.denoiser, x_T, "ddpm", 10, "leading", generator=g))
    assert (ours - ref).abs().max() < 1e-5 and float(ours.std()) > 0.01
    back = load_model(out)  # and our opener reads it back: the same process
    assert torch.allclose(back.process.alpha_bar, ours_model.process.alpha_bar, atol=1e-6)


@pytest.mark.parametrize("extra, message", [
    (["--set", "net.patch_size=2"], "export: net.patch_size = 2: diffusers' UNet2DModel has no pixel-unshuffle"),
    (["--set", "net.channels=32"], "export: the U-Net's GroupNorm layers use"),
    (["--set", "net.resample=biggan"], "export: net.resample = 'biggan'"),
    (["--process", "vp"], "export: process VPSDE does not map"),
    (["--prediction", "edm"], "export: prediction 'edm' does not map"),
    (["--set", "net.attention_levels=[0]", "--set", "net.channel_mult=[1,2]"], "diffusers uses one attention_head_dim"),
    ([], "out: "),
])
def test_export_refuses_what_does_not_map_in_one_line(extra, message, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", "digits", "--steps", "1", "--batch-size", "16", "--out", str(run), *WIDE,
                 *extra]) == 0
    out = tmp_path / "pipe"
    if not extra:  # an existing, non-empty target
        out.mkdir()
        (out / "x").write_text("x")
    capsys.readouterr()
    assert main(["export", str(run), "--to", "diffusers", str(out)]) == 2
    one_line_error(capsys, message)
    assert extra == [] or not out.exists()
