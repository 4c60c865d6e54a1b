"""An image folder streamed batch by batch (`stream: true`): the same examples, labels and weights as the in-memory
loader, with reader processes too; a resumed streamed run ends where an uninterrupted one does; bad input is one
line."""
import numpy as np
import pytest
import torch

from denoisekit.cli import main
from denoisekit.data import load_dataset
from denoisekit.recipes import RunConfig
from denoisekit.recipes.build import prepare_run
from denoisekit.streaming import stream_image_folder
from denoisekit.train import Trainer
from test_reliability import one_line_error


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """120 grey 8x8 PNGs in two class folders."""
    from PIL import Image
    root = tmp_path_factory.mktemp("stream") / "images"
    rng = np.random.default_rng(0)
    for i in range(120):
        (root / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(root / f"c{i % 2}" / f"{i:04d}.png")
    return root


def test_a_streamed_folder_reads_the_same_examples_and_labels(folder):
    whole, lazy = load_dataset(str(folder)), stream_image_folder(folder)
    assert tuple(lazy.x.shape) == tuple(whole.x.shape) and lazy.is_image and len(lazy) == 120
    idx = torch.tensor([5, 0, 119, 5])
    assert torch.equal(lazy.x[idx], whole.x[idx]) and torch.equal(lazy.x[3:6], whole.x[3:6])
    assert torch.equal(lazy.y, whole.y) and lazy.num_classes == whole.num_classes == 2


def _run(folder, stream: bool, **train):
    rc = RunConfig.from_dict({"data": str(folder), "stream": stream, "class_cond": True,
                              "net": {"channels": 8, "channel_mult": [1]},
                              "train": {"steps": 6, "batch_size": 16, "checkpoint_every": 3, "progress": False,
                                        "tensorboard": False, "log_every": 100, **train}})
    return prepare_run(rc)


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_training_takes_the_in_memory_runs_steps(folder, tmp_path, workers):
    """Six steps streamed (read in the training process, or by 2 reader processes ahead of it) end with the
    in-memory run's weights, bitwise: the same examples, labels and noise at every step."""
    results = []
    for name, stream in (("memory", False), ("stream", True)):
        run = _run(folder, stream, data_workers=workers)
        trainer = Trainer(run.denoiser, run.loss, run.ds, tmp_path / name, run.tc)
        trainer.train()
        results.append(trainer.model.state_dict())
    for k in results[0]:
        assert torch.equal(results[0][k], results[1][k]), k


def test_a_streamed_run_resumes_exactly(folder, tmp_path):
    run = _run(folder, True, data_workers=1)
    whole = Trainer(run.denoiser, run.loss, run.ds, tmp_path / "a", run.tc)
    whole.train()
    run = _run(folder, True, data_workers=1)
    Trainer(run.denoiser, run.loss, run.ds, tmp_path / "b", run.tc).train(until=3)
    run = _run(folder, True, data_workers=1)
    second = Trainer(run.denoiser, run.loss, run.ds, tmp_path / "b", run.tc)
    assert second.resume() and second.step == 3
    second.train()
    for (k, p), q in zip(whole.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.equal(p, q), k


def test_stream_from_the_command_line(folder, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--data", str(folder), "--set", "stream=true", "--set", "train.data_workers=1",
                 "--steps", "2", "--batch-size", "8", "--out", str(out), "--set", "net.channels=8",
                 "--set", "net.channel_mult=[1]", "--set", "train.progress=false", "--set", "sample.steps=2",
                 "--set", "sample.n=4"]) == 0
    assert (out / "checkpoints" / "latest").is_file()


@pytest.mark.parametrize("argv, message", [
    (["--data", "mnist", "--set", "stream=true"], "stream: only an image folder is read batch by batch; 'mnist' is "
     "a built-in data set"),
    (["--data", "FOLDER", "--set", "stream=1"], "stream: expected"),
    (["--data", "FOLDER", "--set", "stream=true", "--set", "train.data_workers=-1"], "train.data_workers: expected "
     "an integer >= 0"),
    (["--data", "FOLDER", "--set", "stream=true", "--super-resolution", "4"], "stream: a super-resolution run"),
    (["--data", "EMPTY", "--set", "stream=true"], "data: no images (.bmp, .gif, .jpeg, .jpg, .png, .tif, .tiff, "
     ".webp) and no .tar shards found under"),
    (["--data", "BROKEN", "--set", "stream=true"], "data: cannot index the shard"),
])
def test_stream_bad_input_is_one_line(argv, message, folder, tmp_path, capsys):
    (tmp_path / "EMPTY").mkdir()
    (tmp_path / "BROKEN").mkdir()
    (tmp_path / "BROKEN" / "shard-0000.tar").write_bytes(b"not a tar file" * 100)
    argv = [str(folder) if a == "FOLDER" else str(tmp_path / a) if a in ("EMPTY", "BROKEN") else a for a in argv]
    out = tmp_path / "out"
    assert main(["train", *argv, "--out", str(out)]) == 2
    one_line_error(capsys, message)
    assert not out.exists()


def _shards(folder, out, labelled=True):
    """The folder's images, in the in-memory loader's order, as two WebDataset-layout shards (key.png + key.cls)."""
    import io
    import tarfile
    from denoisekit.data import folder_images, folder_labels
    files = folder_images(folder)
    y, _ = folder_labels(folder, files)
    out.mkdir()
    for s, part in enumerate((files[:70], files[70:])):
        with tarfile.open(out / f"shard-{s:04d}.tar", "w") as tf:
            for f in part:
                i = files.index(f)
                members = [(f"{i:06d}.png", f.read_bytes())] + ([(f"{i:06d}.cls", str(int(y[i])).encode())]
                                                                 if labelled else [])
                for name, data in members:
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
    return out


def test_tar_shards_stream_the_same_examples_and_train(folder, tmp_path):
    """Two WebDataset-layout shards of the folder's images (with .cls labels) read the same examples and labels by
    offset; a streamed run on them trains from the command line; without .cls members there are no labels."""
    shards = _shards(folder, tmp_path / "shards")
    whole, lazy = load_dataset(str(folder)), stream_image_folder(shards)
    assert len(lazy) == 120 and torch.equal(lazy.y, whole.y) and lazy.num_classes == 2
    idx = torch.tensor([0, 69, 70, 119, 33])
    assert torch.equal(lazy.x[idx], whole.x[idx])
    assert main(["train", "--data", str(shards), "--set", "stream=true", "--set", "class_cond=true", "--steps", "2",
                 "--batch-size", "8", "--out", str(tmp_path / "run"), "--set", "net.channels=8",
                 "--set", "net.channel_mult=[1]", "--set", "train.progress=false", "--set", "sample.steps=2",
                 "--set", "sample.n=4"]) == 0
    assert stream_image_folder(_shards(folder, tmp_path / "plain", labelled=False)).y is None


def test_the_evaluator_reads_a_streamed_data_set_in_batches(folder):
    """The reference classifier trains on, and the reference features come from, the streamed images: the same metrics
    as the in-memory data set gives for the same samples."""
    from denoisekit.eval import Evaluator
    whole, lazy = load_dataset(str(folder)), stream_image_folder(folder)
    samples = torch.rand(40, 1, 8, 8) * 2 - 1
    a = Evaluator(whole, cache=False, progress=False).evaluate(samples)
    b = Evaluator(lazy, cache=False, progress=False).evaluate(samples)
    assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k], rel=1e-6) for k in a if isinstance(a[k], float))


def test_eval_stream_scores_like_the_whole_folder(folder, tmp_path, capsys):
    """`denoisekit eval --stream` gives the metrics of the in-memory folder; --stream with a built-in data set is one
    line before any work."""
    import json
    np.savez(tmp_path / "s.npz", x=(torch.rand(40, 1, 8, 8) * 2 - 1).numpy())
    scores = []
    for extra in ([], ["--stream"]):
        out = tmp_path / f"m{len(extra)}.json"
        assert main(["eval", str(tmp_path / "s.npz"), "--data", str(folder), "--k", "2", "--json", str(out),
                     "--cache-dir", str(tmp_path / "cache"), *extra]) == 0
        scores.append(json.loads(out.read_text()))
    assert scores[0]["fd"] == pytest.approx(scores[1]["fd"], rel=1e-6)
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "s.npz"), "--data", "mnist", "--stream"]) == 2
    one_line_error(capsys, "--stream: reads an image folder (or a folder of .tar shards) in batches; 'mnist'")
