"""The evaluator on real digits: the distance sees noise, blur, off-manifold samples and dropped modes."""
import json

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from denoisekit.cli import main
from denoisekit.data import load_dataset, make_toy
from denoisekit.eval import Evaluator, frechet_distance_features, reference_classifier


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def evaluator(digits, cache):
    return Evaluator(digits, cache_root=cache, progress=False)


def _noisy(x, s, seed=0):
    return (x + s * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))).clamp(-1, 1)


def _blur(x, sigma):
    r = torch.arange(-3, 4, dtype=torch.float32)
    k = torch.exp(-r ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (3, 3, 0, 0), mode="replicate"), k.view(1, 1, 1, 7))
    return F.conv2d(F.pad(x, (0, 0, 3, 3), mode="replicate"), k.view(1, 1, 7, 1))


def test_classifier_is_accurate_and_reported(evaluator, digits):
    """The reported accuracy is the classifier's on the held-out split, recomputed here from its logits."""
    from denoisekit.eval.classifier import split_indices
    train_idx, test_idx = split_indices(len(digits))
    logits = evaluator.classifier.features_and_logits(digits.x[test_idx])[1]
    accuracy = float((logits.argmax(1) == digits.y[test_idx]).float().mean())
    assert accuracy > 0.95 and len(set(train_idx.tolist()) & set(test_idx.tolist())) == 0
    assert evaluator.info["classifier_accuracy"] == pytest.approx(accuracy, abs=1e-9)
    assert evaluator.evaluate(evaluator.dataset.x[:100])["classifier_accuracy"] == pytest.approx(accuracy, abs=1e-9)


def test_distance_to_itself_is_zero_and_to_a_disjoint_split_small(evaluator, digits):
    feats = evaluator.real_features
    perm = torch.randperm(len(feats), generator=torch.Generator().manual_seed(1))
    a, b = perm[:900], perm[900:]
    assert evaluator.evaluate(digits.x)["fd"] < 1e-6
    split = frechet_distance_features(feats[a], feats[b])
    noisy = frechet_distance_features(evaluator.classifier.features_and_logits(_noisy(digits.x[a], 0.5))[0], feats[b])
    low = digits.y < 5
    classes = frechet_distance_features(feats[low], feats[~low])
    print(f"\nFD disjoint halves {split:.4f}; with noise 0.5 {noisy:.4f}; digits 0-4 vs 5-9 {classes:.4f}")
    assert split < 0.25 * noisy and split < 0.02 * classes


def test_distance_rises_monotonically_with_noise_and_blur(evaluator, digits):
    x = digits.x
    by_noise = [evaluator.evaluate(_noisy(x, s))["fd"] for s in (0.0, 0.1, 0.2, 0.4, 0.8)]
    by_blur = [evaluator.evaluate(_blur(x, s) if s else x)["fd"] for s in (0, 0.5, 0.8, 1.2, 2.0)]
    print(f"\nFD by noise {np.round(by_noise, 4)}; by blur {np.round(by_blur, 4)}")
    assert all(lo < hi for lo, hi in zip(by_noise, by_noise[1:]))
    assert all(lo < hi for lo, hi in zip(by_blur, by_blur[1:]))


def test_precision_falls_off_manifold_recall_falls_when_modes_drop(evaluator, digits):
    x, y = digits.x, digits.y
    clean = evaluator.evaluate(x[:800])
    off = evaluator.evaluate(torch.cat([x[:400], _noisy(x[400:800], 1.0)]))   # half the samples are noise
    junk = evaluator.evaluate(torch.rand(800, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    only_three = evaluator.evaluate(x[y < 3][:500])                           # three digits of ten
    print(f"\nclean P/R {clean['precision']:.3f}/{clean['recall']:.3f}; off-manifold "
          f"{off['precision']:.3f}/{off['recall']:.3f}; three classes {only_three['precision']:.3f}/"
          f"{only_three['recall']:.3f}")
    assert junk["precision"] < 0.6 * clean["precision"] and off["precision"] < clean["precision"] - 0.15
    assert only_three["recall"] < clean["recall"] - 0.4 and only_three["precision"] > 0.8
    assert sum(only_three["class_histogram"][3:]) < 0.05 and only_three["class_tv"] > 0.6
    assert only_three["classifier_score"] < 3.2 < clean["classifier_score"]


def test_cached_classifier_is_reused_and_identical(evaluator, digits, cache):
    again = reference_classifier(digits, root=cache, progress=False)
    assert not again.trained_now and again.path == evaluator.classifier.path
    fresh = reference_classifier(digits, cache=False, progress=False)   # a second training from scratch
    assert fresh.trained_now
    for (k, v), w in zip(again.net.state_dict().items(), fresh.net.state_dict().values()):
        assert torch.equal(v, w), k
    assert fresh.accuracy == again.accuracy


def test_unlabelled_images_get_an_actionable_error(tmp_path):
    from denoisekit.data import ArrayDataset
    with pytest.raises(ValueError, match="no class labels"):
        Evaluator(ArrayDataset(torch.zeros(10, 1, 8, 8), name="x"), cache_root=tmp_path)


def test_low_dimensional_data_gets_swd_and_mmd():
    data = make_toy("moons", 4000, seed=0)
    ev = Evaluator(data)
    good = ev.evaluate(make_toy("moons", 2000, seed=1).x)
    bad = ev.evaluate(make_toy("8gaussians", 2000, seed=1).x)
    assert good["swd"] < 2 * ev.info["swd_data_halves"] + 0.01 < bad["swd"]
    assert good["mmd"] < 0.01 < bad["mmd"]
    assert good["precision"] > 0.8 > bad["precision"]


def test_eval_command_on_arrays(tmp_path, capsys, digits, cache):
    np.savez(tmp_path / "s.npz", x=digits.x[:300].numpy())
    rc = main(["eval", str(tmp_path / "s.npz"), "--data", "digits", "--cache-dir", str(cache),
               "--json", str(tmp_path / "m.json")])
    out = capsys.readouterr().out
    assert rc == 0 and "classifier_accuracy" in out and "Inception FID needs" in out
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["n"] == 300 and metrics["fd"] < 0.2 and metrics["precision"] > 0.8
    assert main(["eval", str(tmp_path / "s.npz"), "--data", "mnist", "--cache-dir", str(cache)]) == 2
    assert "shape (1, 8, 8) per sample" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "missing.npz"), "--data", "digits"]) == 2
    assert main(["eval", str(tmp_path / "s.npz")]) == 2
    assert "--data" in capsys.readouterr().err


def test_training_evaluates_every_n_steps_into_the_run_scalars(tmp_path):
    from denoisekit.recipes import RunConfig, train_run
    rc = RunConfig.from_dict({"data": "moons", "net": {"hidden": 32, "depth": 2}, "prediction": "edm",
                              "train": {"steps": 20, "batch_size": 64, "eval_every": 10, "progress": False,
                                        "checkpoint_every": 100, "tensorboard": True},
                              "eval": {"n": 300, "steps": 10, "seed": 5}})
    train_run(rc, tmp_path)
    rows = (tmp_path / "eval.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert header[0] == "step" and "swd" in header and "mmd" in header and len(rows) == 3
    assert [r.split(",")[0] for r in rows[1:]] == ["10", "20"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
    assert [e.step for e in acc.Scalars("eval/swd")] == [10, 20]
