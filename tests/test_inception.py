"""The FID Inception: loads pytorch-fid's weight layout, refuses other files, and matches pytorch-fid: against golden
features the reference implementation computed (tests/fixtures/inception, no extra install), and directly where
pytorch-fid is installed."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from denoisekit.data import ArrayDataset
from denoisekit.eval import Evaluator, FIDInception, load_fid_inception
from denoisekit.eval.inception import inception_features


def _random_weights_file(path, seed=0):
    """A file laid out like pt_inception-2015-12-05: our keys plus the 1008-way fc layer, no BN counters.
    Batch-norm statistics are calibrated on random images, so that signals survive the random layers."""
    torch.manual_seed(seed)
    net = FIDInception()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average
    with torch.no_grad():
        net.train()(torch.rand(8, 3, 32, 32) * 2 - 1)
    net.eval()
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    state["fc.weight"], state["fc.bias"] = torch.randn(1008, 2048), torch.zeros(1008)
    torch.save(state, path)
    return net


def test_loads_the_pytorch_fid_layout_and_gives_2048_features(tmp_path):
    _random_weights_file(tmp_path / "w.pth")
    net = load_fid_inception(tmp_path / "w.pth")
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    f = inception_features(net, x)
    assert f.shape == (3, 2048) and torch.isfinite(f).all() and (f >= 0).all()   # pooled ReLU outputs
    assert torch.allclose(f, inception_features(net, x.expand(-1, 3, -1, -1)))  # grey = three equal channels
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="does not hold the FID Inception.*pytorch-fid"):
        load_fid_inception(tmp_path / "bad.pth")


def test_evaluator_reports_inception_fid_with_local_weights(tmp_path):
    _random_weights_file(tmp_path / "w.pth")
    g = torch.Generator().manual_seed(0)
    ds = ArrayDataset(torch.rand(24, 1, 16, 16, generator=g) * 2 - 1, torch.arange(24) % 2, 2, "tiny")
    ev = Evaluator(ds, cache_root=tmp_path / "cache", inception_weights=str(tmp_path / "w.pth"), progress=False)
    same = ev.evaluate(ds.x)["inception_fid"]
    other = ev.evaluate(-ds.x)["inception_fid"]
    assert same < 1e-3 < other
    assert list((tmp_path / "cache" / "inception").glob("*.pt"))  # reference statistics cached
    with pytest.raises(FileNotFoundError, match="--inception-weights"):
        Evaluator(ds, cache_root=tmp_path / "cache", inception_weights=str(tmp_path / "none.pth"))


GOLDEN = Path(__file__).parent / "fixtures" / "inception"


def test_matches_the_reference_implementations_golden_features(tmp_path):
    """Our network has the reference's keys and shapes, and with the same deterministic weights gives the pool
    features pytorch-fid gave for the same four images (made by tests/fixtures/make_inception_golden.py)."""
    from fixtures.make_inception_golden import golden_images, golden_weights
    keys = [(k, tuple(s)) for k, s in json.loads((GOLDEN / "keys.json").read_text())]
    ours = {k: tuple(v.shape) for k, v in FIDInception().state_dict().items() if not k.endswith("num_batches_tracked")}
    assert ours == {k: s for k, s in keys if not k.endswith("num_batches_tracked") and not k.startswith("fc.")}
    state = golden_weights(keys)
    torch.save(state, tmp_path / "w.pth")
    golden = np.load(GOLDEN / "golden.npz")
    want = torch.from_numpy(golden["features"])
    net = FIDInception().double()  # float64 weights and images, as the reference ran: rounding hides nothing
    missing, unexpected = net.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")}, strict=False)
    assert all(k.endswith("num_batches_tracked") for k in missing) and not unexpected
    with torch.no_grad():
        got = net.eval()(golden_images() * 2 - 1)
    assert float(want.std(0).mean()) > 0.1 * float(want.abs().mean())  # the features tell the images apart
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9 * float(want.abs().max()))
    logits = got @ state["fc.weight"].T + state["fc.bias"]  # the file's fc is the reference's (FID does not use it)
    torch.testing.assert_close(logits, torch.from_numpy(golden["logits"]), rtol=1e-9, atol=1e-9)
    features = inception_features(load_fid_inception(tmp_path / "w.pth"), golden_images().float() * 2 - 1)
    torch.testing.assert_close(features.double(), want, rtol=1e-2, atol=1e-2 * float(want.abs().max()))  # float32


def test_matches_pytorch_fid_inception():
    """Same weights, same images: our features equal pytorch-fid's (needs pytorch-fid and torchvision)."""
    pytest.importorskip("pytorch_fid.inception", exc_type=ImportError)
    from fixtures.make_inception_golden import reference_network
    torch.manual_seed(0)
    model, theirs = reference_network()
    for m in theirs.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # calibrate batch-norm statistics so signals survive the random layers
    with torch.no_grad():
        theirs.train()(torch.rand(8, 3, 299, 299) * 2 - 1)
    theirs.eval()
    ours = FIDInception()
    missing, unexpected = ours.load_state_dict(theirs.state_dict(), strict=False)
    assert not missing and all(k.startswith("fc.") for k in unexpected)
    model.eval(), ours.eval()
    x01 = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(x01)[0].flatten(1)
        got = ours(x01 * 2 - 1)
    assert want.std(0).mean() > 1e-3 * want.abs().mean()  # the features depend on the image
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-5 * float(want.abs().max())), float((got - want).abs().max())
