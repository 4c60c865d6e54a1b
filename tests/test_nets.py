"""Networks: shapes, conditioning slots, and that the conditioning inputs are used."""
import pytest
import torch

from denoisekit.nets import MLP, UNet


@pytest.mark.parametrize("kw", [
    dict(),
    dict(channel_mult=(1, 2), num_res_blocks=2, attention_levels=(1,), dropout=0.1),
    dict(resample="biggan", attention_levels=(0, 2), time_embedding="fourier"),
    dict(patch_size=2, channel_mult=(1, 2)),
    dict(patch_size=2, channel_mult=(1, 2, 2), attention_levels=(1, 2)),  # the demo's: 14x14 -> 7x7 -> 4x4 on 28x28
])
@pytest.mark.parametrize("size", [28, 16])
def test_unet_shapes(kw, size):
    net = UNet(channels=16, **kw)
    x = torch.randn(3, 1, size, size)
    assert net(x, torch.rand(3) * 999).shape == x.shape


def test_unet_odd_sizes_and_rgb():
    net = UNet(in_channels=3, channels=16)
    x = torch.randn(2, 3, 27, 21)
    assert net(x, torch.tensor(3.0)).shape == x.shape


def test_unet_slots_learned_variance_labels_concat():
    torch.manual_seed(0)
    net = UNet(channels=16, out_channels=2, num_classes=10, cond_channels=1)
    for p in net.parameters():  # undo the zero inits so the output depends on every input
        if p.ndim > 1 and not p.any():
            torch.nn.init.normal_(p, std=0.1)
    x, t = torch.randn(4, 1, 16, 16), torch.full((4,), 10.0)
    concat = torch.randn(4, 1, 16, 16)
    out = net(x, t, {"label": torch.tensor([0, 1, 2, 3]), "concat": concat})
    assert out.shape == (4, 2, 16, 16)
    other_label = net(x, t, {"label": torch.tensor([5, 5, 5, 5]), "concat": concat})
    no_label = net(x, t, {"concat": concat})
    other_concat = net(x, t, {"label": torch.tensor([0, 1, 2, 3]), "concat": torch.zeros_like(concat)})
    for other in (other_label, no_label, other_concat):
        assert not torch.allclose(out, other)
    assert not torch.allclose(net(x, t * 50, {"concat": concat}), no_label)  # time is used


def test_unet_starts_at_zero_output():
    net = UNet(channels=16)
    assert torch.equal(net(torch.randn(2, 1, 8, 8), torch.tensor(5.0)), torch.zeros(2, 1, 8, 8))


def test_unet_bad_arguments():
    with pytest.raises(ValueError, match="resample"):
        UNet(resample="pixelshuffle")
    with pytest.raises(ValueError, match="num_heads"):
        UNet(channels=18, attention_levels=(0,), num_heads=4)
    with pytest.raises(ValueError, match="time_embedding"):
        UNet(time_embedding="learned")
    with pytest.raises(ValueError, match="patch_size"):
        UNet(patch_size=2)(torch.randn(1, 1, 7, 7), torch.tensor(1.0))


def test_mlp():
    net = MLP(dim=3, hidden=32, num_classes=4)
    x = torch.randn(5, 3)
    assert net(x, torch.rand(5)).shape == (5, 3)
    assert net(x, torch.tensor(2.0), torch.arange(5) % 4).shape == (5, 3)


def test_demo_config_builds_a_working_net():
    """configs/demo.yaml (the `make demo` and benchmark network) builds, maps MNIST shapes to themselves and trains."""
    from pathlib import Path

    import yaml

    from denoisekit.data import ArrayDataset
    from denoisekit.objectives import SimpleLoss
    from denoisekit.recipes import RunConfig, build_denoiser
    rc = RunConfig.from_dict(yaml.safe_load((Path(__file__).parents[1] / "configs" / "demo.yaml").read_text()))
    x0 = torch.rand(4, 1, 28, 28) * 2 - 1
    denoiser = build_denoiser(rc, ArrayDataset(x0, name="shape"))
    loss = SimpleLoss(**rc.loss)(denoiser, x0).mean()
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in denoiser.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)

