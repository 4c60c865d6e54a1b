"""Guidance on a Gaussian mixture where everything is analytic: class = component, p(y | x_t) closed-form, exact
conditional and unconditional denoisers. Guidance is Bayes' rule on scores, and these tests check exactly that."""
import math

import pytest
import torch
from torchdiffeq import odeint

from denoisekit import GaussianMixture, sample
from denoisekit.guidance import ClassifierFreeGuidance, ClassifierGuidance, DynamicThresholding
from denoisekit.processes import DiscreteVP
from denoisekit.utils import sample_generators

GM = GaussianMixture([0.5, 0.3, 0.2], [[-1.0, 0.0], [1.0, 0.5], [0.0, -1.2]], [0.3, 0.25, 0.2])
PROC = DiscreteVP()
N = 2000


def noise(n=N, seed=0):
    gens = sample_generators(seed, n)
    return PROC.prior_sample((n, 2), gens, dtype=torch.float64), gens


def component(x):
    return GM.log_class_posterior(x, 1.0, 1e-3).argmax(1)


@pytest.mark.parametrize("sampler,steps", [("ddim", 50), ("heun", 30), ("dpmpp_2m", 40), ("unipc", 20)])
def test_classifier_guidance_at_scale_1_is_the_conditional_model(sampler, steps):
    """grad log p(x_t) + grad log p(y | x_t) = grad log p(x_t | y): with the exact unconditional model and the exact
    noisy classifier, the score form at s = 1 gives the conditional model's samples from the same noise."""
    x_T, _ = noise(500)
    y = torch.arange(500) % 3
    guided = ClassifierGuidance(GM.denoiser(PROC), GM.classifier(PROC), scale=1.0)
    x = sample(guided, x_T, sampler, steps, cond=y)
    ref = sample(GM.denoiser(PROC, conditional=True), x_T, sampler, steps, cond=y)
    assert (x - ref).abs().max() < 1e-9
    assert (component(x) == y).double().mean() > 0.99


def test_classifier_guidance_mean_form_reproduces_the_class_conditional_distribution():
    """Alg. 1 of Dhariwal & Nichol: mu + s Sigma grad log p(y | x_t) with ancestral DDPM (1000 steps), s = 1."""
    x_T, gens = noise()
    y = torch.full((N,), 2)
    guided = ClassifierGuidance(GM.denoiser(PROC), GM.classifier(PROC), scale=1.0, form="mean")
    x = sample(guided, x_T, "ddpm", 1000, cond=y, generator=gens)
    frac = (component(x) == 2).double().mean()
    assert frac > 1 - 4 * math.sqrt(0.01 / N) - 0.002
    se = GM.tau[2] / math.sqrt(N)
    assert ((x.mean(0) - GM.mu[2]).abs() < 4 * se).all()
    assert ((x.std(0) / GM.tau[2] - 1).abs() < 0.08).all()
    # the unguided model, from the same noise, puts only about w_2 = 0.2 of its samples there
    x_u = sample(GM.denoiser(PROC), x_T, "ddpm", 1000, cond=y, generator=gens)
    assert abs((component(x_u) == 2).double().mean() - 0.2) < 0.04
    with pytest.raises(ValueError, match="mean form shifts the ancestral DDPM"):
        sample(guided, x_T, "ddim", 10, cond=y)


def test_classifier_guidance_raises_class_accuracy_monotonically_with_the_scale():
    x_T, _ = noise(1000)
    y = torch.zeros(1000, dtype=torch.long) + 1
    acc = []
    for s in (0.0, 0.5, 1.0, 2.0):
        x = sample(ClassifierGuidance(GM.denoiser(PROC), GM.classifier(PROC), scale=s), x_T, "dpmpp_2m", 30, cond=y)
        acc.append(float((component(x) == 1).double().mean()))
    assert acc == sorted(acc) and acc[0] < 0.4 and acc[-1] > 0.99, acc


def test_cfg_at_w_0_is_the_conditional_model_and_at_w_minus_1_the_unconditional():
    x_T, _ = noise(500)
    y = torch.arange(500) % 3
    cond_model = GM.denoiser(PROC, conditional=True)
    for w, ref_cond in ((0.0, y), (-1.0, torch.full_like(y, -1))):
        x = sample(ClassifierFreeGuidance(cond_model, w), x_T, "dpmpp_2m", 30, cond=y)
        ref = sample(cond_model, x_T, "dpmpp_2m", 30, cond=ref_cond)
        assert (x - ref).abs().max() < 1e-12, w
    # the gamma spelling is the same wrapper
    a = sample(ClassifierFreeGuidance(cond_model, 2.0), x_T, "dpmpp_2m", 20, cond=y)
    b = sample(ClassifierFreeGuidance(cond_model, gamma=3.0), x_T, "dpmpp_2m", 20, cond=y)
    assert torch.equal(a, b)


def _cfg_score_flow(x_T, y, w, t_max):
    """The CFG probability-flow ODE integrated independently: dx~/ds = -s * score~, score~ = (1 + w) grad log
    p_s(x~ | y) - w grad log p_s(x~) in x~ = x/alpha, s = sigma/alpha (variance-exploding form), by dopri5 at 1e-10."""
    s_max = float(PROC.sigma(torch.tensor(t_max)) / PROC.alpha(torch.tensor(t_max)))
    cond = GaussianMixture(torch.ones(1), GM.mu[y[0]][None], GM.tau[y[0]][None])

    def f(s, x):
        s = s.clamp(min=1e-12)
        score = (1 + w) * cond.score(x, 1.0, s) - w * GM.score(x, 1.0, s)
        return -s * score

    x_tilde = x_T / float(PROC.alpha(torch.tensor(t_max)))
    s_min = float(PROC.sigma(torch.tensor(0.0)) / PROC.alpha(torch.tensor(0.0)))
    path = odeint(f, x_tilde, torch.tensor([s_max, s_min], dtype=torch.float64), rtol=1e-10, atol=1e-10)
    return path[-1]


def test_cfg_follows_the_guided_probability_flow_and_is_not_the_tilted_density():
    """At w > 0 the samplers integrate the ODE of (1 + w) score(x | y) - w score(x) (checked against dopri5). That
    flow does not sample the tilted density p(x | y)^(1+w) / p(x)^w of its name (Chidambaram et al. 2024; Bradley &
    Nakkiran 2024): for separated classes the tilt barely changes p(x | y), while CFG pushes the samples away from the
    other classes and narrows them. The tilted density is sampled independently, by importance resampling."""
    x_T, _ = noise(400)
    y = torch.full((400,), 2)
    w = 2.0
    x = sample(ClassifierFreeGuidance(GM.denoiser(PROC, conditional=True), w), x_T, "dpmpp_2m", 200, cond=y)
    ref = _cfg_score_flow(x_T, y, w, PROC.t_max)
    assert (x - ref).abs().max() < 2e-3
    # the tilted density by importance resampling from p(x | y): weights p(y | x)^w
    g = torch.Generator().manual_seed(1)
    proposal = GM.mu[2] + GM.tau[2] * torch.randn(200_000, 2, generator=g, dtype=torch.float64)
    logw = w * GM.log_class_posterior(proposal, 1.0, 0.0)[:, 2]
    tilted = proposal[torch.multinomial(torch.softmax(logw, 0), 20_000, replacement=True, generator=g)]
    assert (tilted.mean(0) - GM.mu[2]).abs().max() < 0.02 and ((tilted.std(0) / GM.tau[2] - 1).abs() < 0.03).all()
    big = sample(ClassifierFreeGuidance(GM.denoiser(PROC, conditional=True), w), noise()[0], "dpmpp_2m", 50,
                 cond=torch.full((N,), 2))
    assert big[:, 1].mean() < GM.mu[2][1] - 0.2  # pushed away from the classes above it
    assert (big.std(0) < 0.85 * tilted.std(0)).all()  # and narrowed


def test_importance_resampling_samples_a_tilted_gaussian():
    """The resampler above, on a case with a closed form: N(0, 1)^(1+w) / N(0, 2)^w is N(0, 1 / (1 + w/2))."""
    g = torch.Generator().manual_seed(0)
    w = 3.0
    prop = torch.randn(400_000, generator=g, dtype=torch.float64)
    logw = w * (-prop**2 / 2 + prop**2 / 4)
    x = prop[torch.multinomial(torch.softmax(logw, 0), 50_000, replacement=True, generator=g)]
    assert abs(float(x.var()) - 1 / (1 + w / 2)) < 0.01


def test_cfg_rescale_interval_and_thresholding():
    x_T, _ = noise(300)
    y = torch.arange(300) % 3
    model = GM.denoiser(PROC, conditional=True)
    plain = sample(ClassifierFreeGuidance(model, 3.0), x_T, "dpmpp_2m", 20, cond=y)
    # an interval that covers no step is the conditional model; one that covers every step is plain CFG
    cond_only = sample(model, x_T, "dpmpp_2m", 20, cond=y)
    none = sample(ClassifierFreeGuidance(model, 3.0, interval=(1e6, 1e7)), x_T, "dpmpp_2m", 20, cond=y)
    every = sample(ClassifierFreeGuidance(model, 3.0, interval=(0.0, 1e7)), x_T, "dpmpp_2m", 20, cond=y)
    assert torch.allclose(none, cond_only, atol=1e-12) and torch.allclose(every, plain, atol=1e-12)
    # rescale phi = 1 gives each x0 prediction the per-sample std of the conditional one
    guided = ClassifierFreeGuidance(model, 3.0, rescale=1.0)
    t = torch.full((300,), 500.0, dtype=torch.float64)
    x_t = PROC.q_sample(GM.sample(300)[0], t, torch.randn(300, 2, dtype=torch.float64))
    x0_c = model(x_t, t, y).x0
    assert torch.allclose(guided(x_t, t, y).x0.std(1), x0_c.std(1), rtol=1e-9)
    # dynamic thresholding: |x0| <= 1 always, and predictions already inside [-1, 1] are kept
    thr = DynamicThresholding(ClassifierFreeGuidance(model, 8.0), percentile=0.9)
    x0 = thr(x_t, t, y).x0
    assert x0.abs().max() <= 1 + 1e-12
    small = DynamicThresholding(model, 0.995)
    inside = PROC.q_sample(0.3 * GM.sample(300)[0].clamp(-1, 1), torch.zeros(300), torch.zeros(300, 2))
    assert torch.allclose(small(inside, torch.zeros(300), y).x0, model(inside, torch.zeros(300), y).x0)


def test_guidance_errors_are_one_line():
    model = GM.denoiser(PROC, conditional=True)
    for kwargs, msg in (({}, "give the scale as w"), ({"w": 1, "gamma": 2}, "give the scale as w"),
                        ({"w": -2}, "guidance: expected a scale w >= -1"),
                        ({"w": 1, "rescale": 2}, "guidance_rescale"), ({"w": 1, "interval": (2, 1)}, "guidance_interval")):
        with pytest.raises(ValueError, match=msg):
            ClassifierFreeGuidance(model, **kwargs)
    with pytest.raises(ValueError, match="needs a condition to guide toward"):
        sample(ClassifierFreeGuidance(model, 1.0), noise(4)[0], "ddim", 3)
    with pytest.raises(ValueError, match="classifier_form"):
        ClassifierGuidance(model, GM.classifier(PROC), 1.0, form="other")


# ---- training with label dropout, the noisy classifier, and the command line ------------------------------------
def test_label_dropout_feeds_the_null_label_at_rate_p_uncond():
    from denoisekit.denoiser import Denoiser
    from denoisekit.objectives import SimpleLoss
    seen = []

    def net(x, t, cond):
        seen.append(cond.label.clone())
        return torch.zeros_like(x)

    model = Denoiser.from_function(net, PROC)
    y = torch.arange(4000) % 10
    SimpleLoss(p_uncond=0.25)(model, torch.zeros(4000, 2), y, sample_generators(0, 4000))
    dropped = seen[0] == -1
    assert abs(float(dropped.double().mean()) - 0.25) < 4 * math.sqrt(0.25 * 0.75 / 4000)
    assert torch.equal(seen[0][~dropped], y[~dropped])
    seen.clear()
    SimpleLoss()(model, torch.zeros(10, 2), y[:10], sample_generators(0, 10))
    assert torch.equal(seen[0], y[:10])  # p_uncond = 0: labels untouched, and no extra random draws


def test_the_null_label_is_the_networks_extra_embedding():
    from denoisekit.nets import UNet
    net = UNet(in_channels=1, channels=8, channel_mult=[1], num_classes=3)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3.0, 3.0])
    assert torch.equal(net(x, t, torch.tensor([-1, -1])), net(x, t, None))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny class-conditional digits model, a tiny noisy classifier for it, and an unconditional model."""
    from denoisekit.cli import main
    root = tmp_path_factory.mktemp("guidance")
    tiny = ["--set", "net.channels=8", "--set", "net.channel_mult=[1]", "--set", "train.progress=false",
            "--set", "train.tensorboard=false", "--set", "train.batch_size=16", "--set", "sample.steps=2",
            "--set", "sample.n=4"]
    assert main(["train", "--data", "digits", "--out", str(root / "cc"), "--steps", "4", "--set", "class_cond=true",
                 *tiny]) == 0
    assert main(["train", "--data", "digits", "--out", str(root / "unc"), "--steps", "2", *tiny]) == 0
    assert main(["train-classifier", "--data", "digits", "--out", str(root / "clf"), "--steps", "4", *tiny[:-4]]) == 0
    assert main(["train-classifier", "--data", "digits", "--image-size", "16", "--out", str(root / "clf16"),
                 "--steps", "2", *tiny[:-4]]) == 0
    return root


def test_cli_guidance(runs, tmp_path, capsys):
    from PIL import Image

    from denoisekit.cli import main
    out = tmp_path / "g.png"
    assert main(["sample", str(runs / "cc"), "--guidance", "2", "--guidance-rescale", "0.7", "--threshold", "0.995",
                 "--n", "20", "--steps", "3", "--out", str(out), "--npz", str(tmp_path / "g.npz")]) == 0
    assert "one row per class" in capsys.readouterr().out
    assert np_shape(tmp_path / "g.npz") == (20, 1, 8, 8)  # 10 classes x 2
    with Image.open(out) as im:
        assert im.size[0] < im.size[1]  # 2 columns, 10 rows
    for extra in (["--classifier", str(runs / "clf"), "--classifier-scale", "3", "--class", "4"],
                  ["--classifier", str(runs / "clf"), "--classifier-form", "mean", "--class", "all"],
                  ["--guidance", "1", "--guidance-interval", "0.5,20", "--classifier", str(runs / "clf")]):
        assert main(["sample", str(runs / "cc"), "--n", "10", "--steps", "3", "--out", str(out), *extra]) == 0
    assert main(["sample", str(runs / "unc"), "--classifier", str(runs / "clf"), "--class", "all", "--n", "10",
                 "--steps", "3", "--out", str(out)]) == 0  # classifier guidance of an unconditional model
    capsys.readouterr()
    assert main(["eval", str(runs / "cc"), "--guidance", "1", "--n", "40", "--steps", "2",
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    assert "class_accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["--guidance", "2", "--class", "10"], "--class: expected a class in 0..9, got 10"),
    (["--guidance", "-3"], "guidance: expected a scale w >= -1"),
    (["--guidance-rescale", "0.5"], "they modify --guidance W, which is not given"),
    (["--guidance", "1", "--guidance-rescale", "2"], "guidance_rescale"),
    (["--guidance", "1", "--guidance-interval", "3,1"], "guidance_interval"),
    (["--guidance", "1", "--guidance-interval", "x"], "argument --guidance-interval: expected LO,HI"),
    (["--threshold", "0"], "threshold"),
    (["--classifier", "CLF16"], "--classifier: it was trained on data of shape [1, 16, 16], but the model makes "
                                "[1, 8, 8]"),
    (["--classifier", "CC"], "--classifier:|is not a noisy classifier"),
    (["--classifier", "CLF", "--classifier-form", "mean", "--sampler", "ddim"], "--classifier-form: 'mean'"),
    (["--guidance", "1", "--schedule", "auto", "--sampler", "dpmpp_2m"], "--schedule: 'auto' is fitted to"),
    (["--classifier", "CLF", "--classifier-scale", "nan"], "classifier_scale: expected a finite number"),
    (["--class", "three"], "argument --class/--label: expected a class index or 'all'"),
])
def test_cli_guidance_errors(runs, tmp_path, capsys, args, message):
    from denoisekit.cli import main
    args = [{"CLF16": str(runs / "clf16"), "CC": str(runs / "cc"), "CLF": str(runs / "clf")}.get(a, a) for a in args]
    out = tmp_path / "x.png"
    try:
        rc = main(["sample", str(runs / "cc"), "--steps", "2", "--n", "4", "--out", str(out), *args])
    except SystemExit as e:
        rc = e.code
    assert rc == 2
    err = [x for x in capsys.readouterr().err.replace("\r", "\n").splitlines() if "error:" in x]
    assert len(err) == 1 and all(m in err[0] for m in message.split("|")), err
    assert not out.exists()


def test_cli_guidance_needs_a_model_trained_for_it(runs, tmp_path, capsys):
    from denoisekit.cli import main
    for model, args, message in (
            ("unc", ["--guidance", "2"], "needs a class- or text-conditional model"),
            ("unc", ["--class", "3"], "trained without class labels"),
            ("clf", [], "holds a NoisyClassifier, not a diffusion model (use it with --classifier)")):
        assert main(["sample", str(runs / model), "--steps", "2", "--out", str(tmp_path / "x.png"), *args]) == 2
        assert message in capsys.readouterr().err
    assert main(["train-classifier", "--data", "moons", "--out", str(tmp_path / "c"), "--check"]) == 2
    assert "train-classifier needs labelled images; 'moons' holds vectors" in capsys.readouterr().err
    assert main(["train-classifier", "--data", "digits", "--set", "net.hidden=3", "--check"]) == 2
    assert "net: unknown key 'hidden'" in capsys.readouterr().err
    assert main(["train", "--data", "moons", "--set", "loss.p_uncond=0.1", "--check"]) == 2
    assert "loss.p_uncond: drops class labels or captions, so it needs class_cond or text_cond: true" in \
        capsys.readouterr().err
    assert main(["train", "--data", "digits", "--set", "class_cond=true", "--set", "loss.p_uncond=1.5", "--check"]) == 2
    assert "loss.p_uncond: expected a probability in [0, 1), got 1.5" in capsys.readouterr().err


def test_noisy_classifier_learns_and_is_least_sure_at_high_noise(tmp_path):
    from denoisekit.recipes import RunConfig
    from denoisekit.recipes.classifier import accuracy_by_noise_level, train_classifier_run
    from denoisekit.models import load_classifier
    rc = RunConfig.from_dict({"data": "digits", "net": {"channels": 16, "channel_mult": [1, 2]},
                              "train": {"steps": 300, "batch_size": 64, "lr": 2e-3, "warmup_steps": 20,
                                        "progress": False, "tensorboard": False, "ema_decay": 0.99}})
    train_classifier_run(rc, tmp_path)
    classifier, _ = load_classifier(tmp_path)
    acc = accuracy_by_noise_level(classifier, __import__("denoisekit").data.load_dataset("digits"))
    assert acc["t=0"] > 0.8 and acc["t=999"] < 0.3 and acc["t=0"] >= acc["t=500"] >= acc["t=999"] - 0.05, acc


def np_shape(path):
    import numpy as np
    return np.load(path)["x"].shape
