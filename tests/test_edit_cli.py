"""`denoisekit edit`: inpainting with a mask and SDEdit from a strength, for a diffusion model and a consistency model,
the known pixels kept exactly, and one-line refusals of bad input before any work."""
import numpy as np
import pytest
from PIL import Image

from denoisekit.cli import main

DIGITS = ("data: digits\nnet: {channels: 8, channel_mult: [1], num_res_blocks: 1, attention_levels: []}\n"
          "prediction: v\ntrain: {steps: 4, batch_size: 16, progress: false, tensorboard: false}\n"
          "sample: {steps: 4, n: 4}\n")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny 8x8 digits model, a consistency model distilled from it, an image and a mask (left half filled)."""
    root = tmp_path_factory.mktemp("edit")
    (root / "d.yaml").write_text(DIGITS)
    assert main(["train", "--config", str(root / "d.yaml"), "--out", str(root / "model")]) == 0
    assert main(["distill", "--method", "consistency", "--teacher", str(root / "model"), "--out", str(root / "cm"),
                 "--steps-per-stage", "2", "--set", "train.progress=false", "--set", "train.tensorboard=false"]) == 0
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), "L").save(root / "image.png")
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[:, :4] = 255
    Image.fromarray(mask, "L").save(root / "mask.png")
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8), "L").save(root / "black.png")
    return root


def grid_cells(path, n, size=8, scale=2, pad=2):
    """The cells of a one-row picture grid as uint8 arrays (the grid, padding included, enlarged `scale` times)."""
    a = np.asarray(Image.open(path).convert("L"))[::scale, ::scale]
    return [a[pad:pad + size, pad + j * (size + pad):pad + j * (size + pad) + size] for j in range(n)]


@pytest.mark.parametrize("model", ["model", "cm"])
def test_inpainting_keeps_the_black_part_of_the_mask(runs, tmp_path, capsys, model):
    out = tmp_path / "e.png"
    assert main(["edit", str(runs / model), str(runs / "image.png"), "--mask", str(runs / "mask.png"), "--n", "3",
                 "--steps", "4", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert ("Algorithm 4" in said) == (model == "cm") and "each row: the input, then 3 results" in said
    image = np.asarray(Image.open(runs / "image.png"))
    cells = grid_cells(out, 4)
    for cell in cells[1:]:
        assert np.array_equal(cell[:, 4:], image[:, 4:])  # kept, to the pixel
    assert any(not np.array_equal(cell[:, :4], image[:, :4]) for cell in cells[1:])


@pytest.mark.parametrize("model", ["model", "cm"])
def test_sdedit_from_a_strength(runs, tmp_path, capsys, model):
    out = tmp_path / "e.png"
    assert main(["edit", str(runs / model), str(runs / "image.png"), "--strength", "0.5", "--n", "2", "--steps",
                 "2", "--out", str(out)]) == 0
    assert f"SDEdit at strength 0.5 with {'consistency' if model == 'cm' else 'ddpm'}" in capsys.readouterr().out
    assert out.exists()


@pytest.mark.parametrize("extra,message", [
    ([], "--mask/--strength: give exactly one"),
    (["--mask", "MASK", "--strength", "0.5"], "--mask/--strength: give exactly one"),
    (["--strength", "1.5"], "--strength: expected a number in (0, 1]"),
    (["--strength", "0.5", "--steps", "0"], "--steps: expected a positive integer"),
    (["--mask", "MASK", "--sampler", "ddim"], "--sampler: inpainting runs ancestral DDPM"),
    (["--strength", "0.5", "--resample", "3"], "--resample: RePaint's resampling applies to inpainting"),
    (["--mask", "BLACK"], "has no white pixels"),
    (["--strength", "0.5", "--sampler", "nope"], "--sampler/--schedule: sampler: expected one of"),
    (["--strength", "0.5", "--class", "3"], "--class: this model was trained without class labels"),
    (["--strength", "0.5", "--out", "x.txt"], "--out: expected a file name ending in"),
])
def test_edit_refuses_bad_input_in_one_line(runs, tmp_path, capsys, extra, message):
    extra = [str(runs / "mask.png") if a == "MASK" else str(runs / "black.png") if a == "BLACK" else a for a in extra]
    out = tmp_path / "e.png"
    args = ["edit", str(runs / "model"), str(runs / "image.png"), *extra]
    if "--out" not in extra:
        args += ["--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_edit_refuses_a_vector_model_and_a_missing_image(runs, tmp_path, capsys):
    (tmp_path / "m.yaml").write_text("data: moons\nnet: {hidden: 16, depth: 1}\ntrain: {steps: 2, progress: false, "
                                     "tensorboard: false}\nsample: {steps: 4, n: 4}\n")
    assert main(["train", "--config", str(tmp_path / "m.yaml"), "--out", str(tmp_path / "moons")]) == 0
    capsys.readouterr()
    assert main(["edit", str(tmp_path / "moons"), str(runs / "image.png"), "--strength", "0.5"]) == 2
    assert "is not an image model" in capsys.readouterr().err
    assert main(["edit", str(runs / "model"), str(tmp_path / "none.png"), "--strength", "0.5"]) == 2
    assert "image: no such file" in capsys.readouterr().err
