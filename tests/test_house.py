"""The house of issue 19: registries the CLI derives from, one conditioning type, a process contract beyond the scalar
family (a toy two-component process with its own sampler), teacher steps, the loss hooks, the model opener, and the
small faults (auto-schedule cache key, the plain function's time, leaked file handles)."""
import argparse
import gc
import math
import weakref

import numpy as np
import pytest
import torch
from torch import nn

from denoisekit import Cond, Denoiser, GaussianMixture, load_model, sample
from denoisekit.cli.main import _parser
from denoisekit.conditioning import NULL_LABEL
from denoisekit.guidance.wrappers import CLASSIFIER_FORMS
from denoisekit.likelihood import METHODS, PROBES
from denoisekit.nets import MLP
from denoisekit.objectives import OBJECTIVES, HybridLoss, SimpleLoss
from denoisekit.denoiser import ALL_PREDICTIONS
from denoisekit.processes import PROCESSES, VPSDE, DiscreteVP, Process
from denoisekit.samplers import (SAMPLERS, SCHEDULES, ddim_sample, ddim_step, euler_step, heun_sample, heun_step,
                                 register_sampler, sampling_times)
from denoisekit.samplers.auto import _key, weights_digest
from denoisekit.samplers.registry import check_family
from denoisekit.utils import rand, sample_generators
from denoisekit.vlb import VARIANCES
from denoisekit.recipes.distill import METHODS as DISTILL_METHODS
from denoisekit.interop.export import FORMATS as EXPORT_FORMATS

LEGACY_VP = __import__("pathlib").Path(__file__).parent / "fixtures" / "legacy" / "moons_vp_edm"
GMM = GaussianMixture(torch.tensor([0.3, 0.7]), torch.tensor([[-1.0, 0.5], [1.0, -0.5]]), torch.tensor([0.2, 0.3]))


# --- registries ---------------------------------------------------------------------------------------------------
def _subparsers():
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def test_every_cli_choice_list_equals_its_registry():
    """Each flag with choices lists exactly its registry, and the sampler and schedule flags name theirs in full."""
    registries = {"prediction": ALL_PREDICTIONS, "process": tuple(PROCESSES), "objective": tuple(OBJECTIVES),
                  "variance": VARIANCES, "classifier_form": CLASSIFIER_FORMS, "method": METHODS, "probe": PROBES,
                  "distill_method": DISTILL_METHODS, "to": EXPORT_FORMATS,
                  "schedule": tuple(k for k in SCHEDULES if k != "auto")}
    seen = set()
    for verb, parser in _subparsers().items():
        for action in parser._actions:
            if action.choices is not None:
                assert action.dest in registries, (verb, action.dest)
                assert tuple(action.choices) == tuple(registries[action.dest]), (verb, action.dest)
                seen.add(action.dest)
            if action.dest == "sampler":
                assert action.help.startswith(f"one of {', '.join(SAMPLERS)} (default: ")
            if action.dest == "schedule" and action.choices is None:
                assert ", ".join(SCHEDULES) in action.help
    assert seen == set(registries)


# --- conditioning -------------------------------------------------------------------------------------------------
def test_cond_slots_null_repeat_index_cat():
    c = Cond.of(torch.tensor([3, 1]))
    assert torch.equal(c.label, torch.tensor([3, 1])) and Cond.of(c) is c and Cond.of(None) is None
    full = Cond(label=torch.tensor([2, 0]), concat=torch.ones(2, 1, 4, 4), context=torch.ones(2, 3, 5),
                context_mask=torch.ones(2, 3, dtype=torch.bool), pooled=torch.ones(2, 6), aug=torch.tensor([0.1, 0.2]))
    null = full.null()
    assert torch.equal(null.label, torch.full((2,), NULL_LABEL)) and not null.context_mask.any()
    assert null.pooled.abs().sum() == 0 and null.context.abs().sum() == 0
    assert torch.equal(null.concat, full.concat) and torch.equal(null.aug, full.aug)  # input descriptions are kept
    rep = full.repeat(3)
    assert len(rep) == 6 and torch.equal(rep.label, torch.tensor([2, 0, 2, 0, 2, 0]))
    assert torch.equal(rep.index(slice(2, 4)).context, full.context)
    both = Cond.cat([full, null])
    assert torch.equal(both.label, torch.tensor([2, 0, -1, -1])) and both.concat.shape == (4, 1, 4, 4)
    with pytest.raises(ValueError, match="^cond: unknown slots"):
        Cond.of({"colour": 1})
    with pytest.raises(ValueError, match="^cond: expected None, a label tensor"):
        Cond.of([1, 2])


def test_networks_refuse_slots_they_do_not_read():
    """A context or pooled vector given to a network without cross-attention is an error, never silently ignored."""
    from denoisekit.nets import UNet
    net = UNet(in_channels=1, channels=8, channel_mult=(1,), num_res_blocks=1, attention_levels=(), num_classes=3)
    x, c = torch.zeros(2, 1, 8, 8), torch.zeros(2)
    assert net(x, c, Cond(label=torch.tensor([0, 1]))).shape == x.shape
    with pytest.raises(ValueError, match="^cond: the U-Net reads label, concat; it was given context, context_mask$"):
        net(x, c, Cond(label=torch.tensor([0, 1]), context=torch.zeros(2, 3, 4),
                       context_mask=torch.ones(2, 3, dtype=torch.bool)))
    with pytest.raises(ValueError, match="^cond: the MLP reads label; it was given pooled$"):
        MLP(dim=2)(torch.zeros(2, 2), c, Cond(pooled=torch.zeros(2, 4)))


def test_cond_drop_uses_one_draw_per_example_at_rate_p():
    """Label dropout: example i is dropped iff its own generator's next uniform is < p (the draw of Ho & Salimans
    Alg. 1), so the dropped set does not depend on the batch split; a concatenated image is never dropped."""
    n, p = 4000, 0.25
    c = Cond(label=torch.arange(n) % 10, concat=torch.ones(n, 1, 2, 2))
    dropped = c.drop(p, sample_generators(0, n))
    expect = rand((n,), sample_generators(0, n)) < p
    assert torch.equal(dropped.label == NULL_LABEL, expect)
    assert abs(float(expect.float().mean()) - p) < 4 * math.sqrt(p * (1 - p) / n)
    assert torch.equal(dropped.concat, c.concat) and c.drop(0.0) is c


def test_a_label_tensor_and_a_cond_sample_alike():
    """The plain label tensor users pass today and the Cond it stands for give the same samples, guided or not."""
    from denoisekit import ClassifierFreeGuidance
    process = DiscreteVP()
    model = GMM.denoiser(process, conditional=True)
    y = torch.tensor([0, 1, 1, 0])
    x_T = process.prior_sample((4, 2), sample_generators(0, 4), dtype=torch.float64)
    for m in (model, ClassifierFreeGuidance(model, 2.0)):
        a = sample(m, x_T, "dpmpp_2m", 10, cond=y)
        b = sample(m, x_T, "dpmpp_2m", 10, cond=Cond(label=y))
        assert torch.equal(a, b)


# --- a process beyond the scalar family ---------------------------------------------------------------------------
class RotatingPair(Process):
    """A toy two-component process on a state (2, *data) = (x, u), u an auxiliary variable starting at N(0, s_u^2):
    d state = F state dt + g dw per data dimension, F = [[-a, b], [-b, -a]] (decay and rotation), so each dimension's
    covariance is a full 2 x 2 matrix, not a scalar sigma^2 (a stand-in for critically-damped Langevin diffusion)."""

    family = "rotating pair (2 x 2 covariance per dimension)"
    t_min, t_max, t_eps, grid_step = 0.0, 1.0, 1e-3, 0.0

    def __init__(self, a=1.5, b=2.0, g=2.0, s_u=0.5):
        self.a, self.b, self.g, self.s_u = a, b, g, s_u

    def state_shape(self, data_shape):
        return (2, *data_shape)

    def data_part(self, state):
        return state[:, 0]

    def transition(self, t):
        """exp(F t) (T, 2, 2) and the noise covariance g^2 (1 - e^{-2at}) / (2a) I added by time t."""
        t = torch.as_tensor(t, dtype=torch.float64).reshape(-1)
        c, s, decay = torch.cos(self.b * t), torch.sin(self.b * t), torch.exp(-self.a * t)
        m = decay[:, None, None] * torch.stack([torch.stack([c, s], -1), torch.stack([-s, c], -1)], -2)
        return m, self.g**2 * -torch.expm1(-2 * self.a * t) / (2 * self.a)

    def marginal(self, mu, var, t):
        """Mean (T, 2) and covariance (T, 2, 2) of one dimension's state at t for x_0 ~ N(mu, var)."""
        m, noise = self.transition(t)
        c0 = torch.diag(torch.tensor([var, self.s_u**2], dtype=torch.float64))
        mean = m @ torch.tensor([mu, 0.0], dtype=torch.float64)
        return mean, m @ c0 @ m.transpose(1, 2) + noise[:, None, None] * torch.eye(2, dtype=torch.float64)

    def perturb(self, x0, t, generator=None):
        raise NotImplementedError  # not needed by this sampler test

    def prior_sample(self, shape, generator=None, *, device=None, dtype=torch.float32):
        std = math.sqrt(self.g**2 / (2 * self.a))
        return std * torch.randn(shape, generator=generator, dtype=dtype)

    def prior_log_prob(self, x):
        v = self.g**2 / (2 * self.a)
        return (-0.5 * x**2 / v - 0.5 * math.log(2 * math.pi * v)).reshape(len(x), -1).sum(1)

    def sde(self, t):
        F = torch.tensor([[-self.a, self.b], [-self.b, -self.a]], dtype=torch.float64)
        return F, self.g**2


class ExactGaussianScore(nn.Module):
    """The exact score of the state's marginal for x_0 ~ N(mu, var) in one dimension: -C^-1 (state - mean)."""

    def __init__(self, process, mu, var):
        super().__init__()
        self.process, self.mu, self.var = process, mu, var

    def forward(self, state, t, cond=None):
        mean, cov = self.process.marginal(self.mu, self.var, t.reshape(-1)[:1])
        diff = state.double().reshape(len(state), 2) - mean
        return -(diff @ torch.linalg.inv(cov[0]).T).reshape(state.shape)


@torch.no_grad()
def reverse_em(model, x_T, times, *, cond=None, generator=None, callback=None, progress=False):
    """Euler-Maruyama on the reverse SDE d state = [F state - g^2 score] dt + g dw-bar, written against the generic
    contract (process.sde(t) as matrices): no alpha, no sigma."""
    x = x_T.double()
    for t, s in zip(times[:-1], times[1:]):
        F, g2 = model.process.sde(t)
        dt = float(t - s)
        score = model(x, torch.full((len(x),), float(t), dtype=torch.float64))
        drift = torch.einsum("ij,bj->bi", F, x.reshape(len(x), 2)).reshape(x.shape) - g2 * score
        x = x - drift * dt + math.sqrt(g2 * dt) * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return x


def test_a_two_component_process_samples_with_its_own_sampler_and_refuses_the_scalar_ones(monkeypatch):
    """The contract carries a (2, *data) state: a hand-written Euler-Maruyama sampler registered for the toy family
    reproduces the data's law through sample(); the scalar ODE solvers and noise-level schedules are refused in one
    line before any work."""
    process = RotatingPair()
    mu, var = 0.7, 0.3**2
    model = ExactGaussianScore(process, mu, var)
    monkeypatch.setitem(SAMPLERS, "pair_em", SAMPLERS["ddpm"])  # replaced below; setitem restores the registry
    register_sampler("pair_em", reverse_em, family=RotatingPair, schedule="uniform")
    n = 4000
    x_T = process.prior_sample((n, *process.state_shape((1,))), torch.Generator().manual_seed(0), dtype=torch.float64)
    assert x_T.shape == (n, 2, 1)
    times = torch.cat([torch.linspace(1.0, process.t_eps, 400, dtype=torch.float64),
                       torch.zeros(1, dtype=torch.float64)])
    state = sample(model, x_T, "pair_em", times=times, generator=torch.Generator().manual_seed(1))
    x = process.data_part(state).reshape(-1)
    se_mean, se_var = math.sqrt(var / n), var * math.sqrt(2 / n)
    assert abs(float(x.mean()) - mu) < 4 * se_mean + 0.01, float(x.mean())  # + the EM step's bias
    assert abs(float(x.var()) - var) < 4 * se_var + 0.01, float(x.var())
    for sampler in ("dpmpp_2m", "heun", "ddim", "unipc"):
        with pytest.raises(ValueError, match=rf"^sampler '{sampler}': works on the scalar Gaussian .* family of "
                                             rf"processes; this model's process RotatingPair is rotating pair .* use "
                                             rf"one of pair_em$"):
            sample(model, x_T, sampler, 10)
    with pytest.raises(ValueError, match="^schedule: 'karras' is spaced in the noise level"):
        sample(model, x_T, "pair_em", 10, "karras")
    assert len(sampling_times(process, 10, "uniform")) == 11
    with pytest.raises(ValueError, match="^sampler 'pair_em': works on the rotating pair"):
        check_family("pair_em", DiscreteVP())


# --- teacher steps ------------------------------------------------------------------------------------------------
def _net_model(process, seed=0):
    torch.manual_seed(seed)
    net = MLP(dim=2, hidden=32, depth=2).double()
    return Denoiser(net, process, "eps")


@pytest.mark.parametrize("process", [DiscreteVP(), VPSDE()], ids=["ddpm", "vp"])
def test_teacher_steps_are_the_samplers_steps_per_example(process):
    """ddim_step and heun_step at per-example times equal one step of ddim_sample / heun_sample at each time alone."""
    model = _net_model(process)
    x = torch.randn(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t = process.round_t(torch.tensor([0.9, 0.5, 0.2], dtype=torch.float64) * process.t_max)
    s = process.round_t(torch.tensor([0.6, 0.3, 0.0], dtype=torch.float64) * process.t_max)
    s[2] = process.t_min  # the last example steps to the data: Heun's last step is an Euler step
    a, _ = ddim_step(model, x, t, s)
    b, _ = heun_step(model, x, t, s)
    for i in range(3):
        times = torch.stack([t[i], s[i]])
        torch.testing.assert_close(a[i], ddim_sample(model, x[i:i + 1], times)[0], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(b[i], heun_sample(model, x[i:i + 1], times)[0], rtol=1e-10, atol=1e-12)


def test_teacher_steps_are_differentiable():
    """Gradients reach the network's weights and the input through each step (a distillation loss under autograd);
    the gradient with respect to x matches finite differences."""
    process = VPSDE()
    model = _net_model(process)
    t, s = torch.tensor([0.8, 0.4], dtype=torch.float64), torch.tensor([0.5, 0.1], dtype=torch.float64)
    for step in (ddim_step, heun_step, euler_step):
        x = torch.randn(2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
        out, _ = step(model, x, t, s)
        grads = torch.autograd.grad(out.sum(), [x, *model.parameters()])
        assert all(g is not None and bool(g.abs().sum() > 0) for g in grads), step.__name__
        assert torch.autograd.gradcheck(lambda z: step(model, z, t, s)[0], (x.detach().requires_grad_(True),))


def test_euler_step_of_the_probability_flow_converges_to_ddim_at_second_order():
    """An Euler step of dx/dt = f x - g^2 score / 2 in the process's own coordinates and DDIM (exact for a constant
    eps) are both first-order steps of the same ODE: they differ by O(dt^2), so halving dt quarters the gap."""
    process = VPSDE()
    model = GMM.denoiser(process)
    x = process.q_sample(GMM.sample(256, generator=torch.Generator().manual_seed(2))[0],
                         torch.full((256,), 0.5, dtype=torch.float64), torch.randn(256, 2, dtype=torch.float64))
    gaps = []
    for dt in (0.02, 0.01, 0.005):
        t = torch.full((256,), 0.5, dtype=torch.float64)
        gaps.append(float((euler_step(model, x, t, t - dt)[0] - ddim_step(model, x, t, t - dt)[0]).norm()))
    assert 3.5 < gaps[0] / gaps[1] < 4.5 and 3.5 < gaps[1] / gaps[2] < 4.5, gaps


# --- loss hooks -----------------------------------------------------------------------------------------------------
class CountingLoss(SimpleLoss):
    """L_simple with an after_step hook and named terms, as a consistency loss's target EMA would use them."""

    term_names = ("half",)

    def __init__(self):
        super().__init__()
        self.calls = []

    def terms(self, denoiser, x0, cond=None, generator=None):
        loss = self(denoiser, x0, cond, generator)
        return {"loss": loss, "half": 0.5 * loss.detach()}

    def after_step(self, model, step):
        self.calls.append(step)


def test_trainer_calls_after_step_and_logs_named_terms(tmp_path):
    from denoisekit import TrainConfig, Trainer, make_toy
    loss = CountingLoss()
    cfg = TrainConfig(steps=4, batch_size=16, log_every=2, progress=False, tensorboard=False, device="cpu")
    Trainer(_net_model(DiscreteVP()).float(), loss, make_toy("moons", 64), tmp_path, cfg).train()
    assert loss.calls == [1, 2, 3, 4]
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert header[-1] == "half" and len(rows) == 3
    for row in rows[1:]:
        values = dict(zip(header, row.split(",")))
        assert abs(float(values["half"]) - 0.5 * float(values["loss"])) < 1e-6


def test_hybrid_loss_terms_sum_to_its_value():
    process = DiscreteVP(T=50)
    torch.manual_seed(0)
    model = Denoiser(MLP(dim=2, hidden=16, depth=1, out_dim=4), process, "eps", learned_variance=True)
    x0 = GMM.sample(32, generator=torch.Generator().manual_seed(0))[0].float()
    terms = HybridLoss(lam=0.01).terms(model, x0, None, sample_generators(0, 32))
    torch.testing.assert_close(terms["loss"], terms["simple"] + terms["vlb"])
    value = HybridLoss(lam=0.01)(model, x0, None, sample_generators(0, 32))
    assert torch.equal(value, terms["loss"])


# --- the small faults -----------------------------------------------------------------------------------------------
def test_auto_schedule_cache_key_sees_any_change_of_the_weights():
    """A sign flip or a permutation of a weight leaves the sum of |w| unchanged, and changes the key."""
    model = _net_model(DiscreteVP())
    key = _key(model, "dpmpp_2m", 5, (2,), {}, 64, 6, 0)
    w = model.net.inp.weight
    with torch.no_grad():
        w.neg_()
    flipped = _key(model, "dpmpp_2m", 5, (2,), {}, 64, 6, 0)
    with torch.no_grad():
        w.neg_()
        w.copy_(w.flip(0))
    permuted = _key(model, "dpmpp_2m", 5, (2,), {}, 64, 6, 0)
    assert len({key, flipped, permuted}) == 3
    assert weights_digest(_net_model(DiscreteVP())) == weights_digest(_net_model(DiscreteVP()))


def test_auto_schedule_cache_does_not_keep_models_alive():
    from denoisekit.samplers import auto_schedule
    model = GMM.denoiser(DiscreteVP())
    auto_schedule(model, "dpmpp_2m", 3, (2,), pilots=8, max_evals=10)
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


def test_from_function_is_given_the_process_time_on_a_continuous_process():
    """Denoiser.from_function hands the callable the process's time t in [t_eps, 1] on a VP SDE, not the network's
    1000 t; a network is given 1000 t."""
    process = VPSDE()
    seen = []
    Denoiser.from_function(lambda x, t: seen.append(t.clone()) or torch.zeros_like(x), process)(
        torch.zeros(2, 2), torch.tensor([0.25, 0.5]))
    torch.testing.assert_close(seen[0], torch.tensor([0.25, 0.5]))

    class Recorder(nn.Module):
        def forward(self, x, c, cond=None):
            seen.append(c.clone())
            return torch.zeros_like(x)
    Denoiser(Recorder(), process)(torch.zeros(2, 2), torch.tensor([0.25, 0.5]))
    torch.testing.assert_close(seen[1], torch.tensor([250.0, 500.0]))


def test_sample_npz_leaks_no_file_handle(tmp_path, capsys):
    """The atomic save of --npz closes what it opens: no 'unclosed file' ResourceWarning reaches the user."""
    from pathlib import Path

    from denoisekit.cli import main
    run = Path(__file__).parent / "fixtures" / "legacy" / "moons_vp_edm"
    assert main(["sample", str(run), "--n", "4", "--steps", "3", "--sampler", "dpmpp_2m", "--out",
                 str(tmp_path / "x.png"), "--npz", str(tmp_path / "x.npz")]) == 0
    gc.collect()
    assert "unclosed" not in capsys.readouterr().err
    assert np.load(tmp_path / "x.npz")["x"].shape == (4, 2)


# --- the model opener -----------------------------------------------------------------------------------------------
def test_load_model_reports_what_a_model_is():
    from pathlib import Path
    legacy = Path(__file__).parent / "fixtures" / "legacy"
    cfg = load_model(legacy / "digits_cfg_hybrid")
    assert cfg.shape == (1, 8, 8) and cfg.num_classes == 10 and cfg.guidance == ("cfg",) and cfg.is_image
    assert cfg.data_name == "digits" and cfg.codec is None and cfg.denoiser.learned_variance
    vp = load_model(legacy / "moons_vp_edm")
    assert vp.shape == (2,) and vp.num_classes is None and vp.guidance == () and isinstance(vp.process, VPSDE)
    with pytest.raises(ValueError, match="^--guidance: classifier-free guidance needs a class- or text-conditional model"):
        vp.guided(w=1.0)
    with pytest.raises(ValueError, match="not a diffusion model .use it with --classifier"):
        load_model(legacy / "digits_classifier")


# --- the tree -------------------------------------------------------------------------------------------------------
SRC = __import__("pathlib").Path(__file__).resolve().parents[1] / "src" / "denoisekit"
# Lower layers first; an import may go to the same layer or a lower one, never up (docs/architecture.md, "The layers").
LAYERS = [("utils", "config"), ("conditioning", "prediction", "images", "train"),
          ("processes", "nets", "data", "streaming", "divergence", "text"), ("denoiser",), ("vlb", "analytic", "eval"),
          ("samplers", "objectives", "guidance", "likelihood", "cascade"), ("recipes", "models"), ("interop",), ("cli",)]


def _imports():
    """(importing module, imported module) for every import inside the package, module level and in functions."""
    import ast
    edges = []
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = ".".join(parts[:-1])
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                # `from . import name`: a submodule if there is such a file, else a name from the package itself
                names = [target] if node.module else [f"{target}.{a.name}" if _is_module(f"{target}.{a.name}")
                                                      else target for a in node.names]
                edges += [(module, n, node.col_offset == 0) for n in names]
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                edges += [(module, n, node.col_offset == 0) for n in names if n and n.startswith("denoisekit")]
    return edges


def _is_module(dotted: str) -> bool:
    path = SRC.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_imports_go_down_the_layers_and_the_modules_form_no_circle():
    layer = {name: i for i, names in enumerate(LAYERS) for name in names}
    edges = _imports()
    assert edges
    for src, dst, _ in edges:
        a, b = _top(src), _top(dst)
        if a and b and a != b:
            assert a in layer and b in layer, (src, dst)
            assert layer[b] <= layer[a], f"{src} imports {dst}, a higher layer"
    # a module never imports the package it is in (the hidden `from . import sample` of samplers/auto.py), even
    # inside a function: the package's __init__ imports its modules, so that is a circle
    for src, dst, _ in edges:
        assert not src.startswith(dst + "."), f"{src} imports its own package {dst}"
    # no circle among modules at import time (module-level imports)
    graph: dict = {}
    for src, dst, top_level in edges:
        if top_level and src != dst:
            graph.setdefault(src, set()).add(dst)
    state: dict = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in graph.get(node, ()):
            assert state.get(nxt) != "open", f"import circle: {' -> '.join(path + [nxt])}"
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"
    for node in list(graph):
        if node not in state:
            visit(node, [node])


def test_no_source_file_is_over_about_400_lines():
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > 420}
    assert not long, long


def test_a_registered_opener_serves_every_command(tmp_path, monkeypatch, capsys):
    """The seam an interop loader plugs into: an opener for another format (here a folder with a marker file holding
    an analytic model) makes `denoisekit sample` work on it, with no change to the CLI."""
    from denoisekit import models
    from denoisekit.cli import main
    folder = tmp_path / "foreign"
    folder.mkdir()
    (folder / "model_index.json").write_text("{}")

    def opener(path, *, ema, device):
        if not (path / "model_index.json").exists():
            return None
        return models.LoadedModel(GMM.denoiser(DiscreteVP()), (2,), None, (), {"run": {"data": "moons"}}, path)
    monkeypatch.setattr(models, "OPENERS", [opener])
    assert main(["sample", str(folder), "--n", "6", "--steps", "4", "--sampler", "ddim", "--out",
                 str(tmp_path / "x.png"), "--npz", str(tmp_path / "x.npz")]) == 0
    x = np.load(tmp_path / "x.npz")["x"]
    ref = sample(GMM.denoiser(DiscreteVP()), DiscreteVP().prior_sample((6, 2), sample_generators(0, 6)), "ddim", 4)
    np.testing.assert_allclose(x, ref.numpy(), rtol=1e-5, atol=1e-5)
    assert load_model(LEGACY_VP).process.__class__ is VPSDE  # other paths still open as checkpoints
