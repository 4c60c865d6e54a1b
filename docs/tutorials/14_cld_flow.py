# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---


# %% [markdown]
# # 14. Critically-damped Langevin diffusion and flow matching
#
# Two departures from the scalar Gaussian process of lectures 1-8.
#
# **Critically-damped Langevin diffusion** (Dockhorn, Vahdat & Kreis 2022) couples the data $x$ to a velocity $v$
# and diffuses only the velocity, like a particle in a heat bath:
#
# $$d\begin{pmatrix} x \\ v \end{pmatrix} = \begin{pmatrix} 0 & M^{-1} \\ -1 & -\Gamma M^{-1} \end{pmatrix}
# \begin{pmatrix} x \\ v \end{pmatrix} \beta\, dt + \begin{pmatrix} 0 \\ \sqrt{2 \Gamma \beta} \end{pmatrix} dw,
# \qquad \Gamma^2 = 4M \text{ (critical damping)}.$$
#
# The model learns only the velocity's score, and the paper's SSCS sampler splits each step into exact half-steps of
# the linear part around an Euler step of the score part.
#
# **Flow matching** (Lipman et al. 2023; rectified flow, Liu et al. 2023) takes the straight path $x_t = (1 - t)\,
# x_0 + t\, \epsilon$ and regresses the velocity:
#
# $$\mathcal{L}_{FM} = \mathbb{E}_{t, x_0, \epsilon} \left\| u_\theta(x_t, t) - (\epsilon - x_0) \right\|^2,
# \qquad u^*(x_t, t) = \mathbb{E}[\epsilon - x_0 \mid x_t].$$

# %%
import math

import matplotlib.pyplot as plt
import torch

from denoisekit import MLP, Denoiser, FlowMatchingLoss, FlowProcess, GaussianMixture, NoiseProcess, sample
from denoisekit.eval import sliced_wasserstein
from denoisekit.processes import CLDProcess
from denoisekit.samplers import straightness
from denoisekit.utils import sample_generators

mix = GaussianMixture([0.2, 0.5, 0.3], [[-1.0, 0.5], [0.8, 0.8], [0.3, -1.0]], [0.1, 0.15, 0.1])


def weights(x):
    """The share of samples whose most likely component is each component."""
    k = mix.log_class_posterior(x.double(), 1.0, 0.0).argmax(1)
    return torch.bincount(k, minlength=3).double() / len(x)

# %% [markdown]
# ## CLD's mean and covariance against a simulation of its SDE
#
# Both are closed-form (a 2x2 covariance per dimension). Euler-Maruyama on the SDE from $x_0 = 0.7$ with
# $v_0 \sim \mathcal{N}(0, \gamma M)$ must agree:

# %%
p = CLDProcess()
g = torch.Generator().manual_seed(0)
n, dt, T, x0 = 50000, 5e-4, 0.3, 0.7
x = torch.full((n,), x0, dtype=torch.float64)
v = torch.randn(n, generator=g, dtype=torch.float64) * math.sqrt(p.gamma * p.M)
for _ in range(int(round(T / dt))):
    dv = -(x + p.damping * p.mass_inv * v) * p.beta * dt
    x = x + p.mass_inv * p.beta * v * dt
    v = v + dv + math.sqrt(2 * p.damping * p.beta * dt) * torch.randn(n, generator=g, dtype=torch.float64)
mx, mv, *_ = p.coefficients(torch.tensor(T))
cov = p.covariance(torch.tensor(T))
for simulated, exact, var in ((x, x0 * mx, cov[0, 0]), (v, x0 * mv, cov[1, 1])):
    assert abs(float(simulated.mean() - exact)) < 4 * math.sqrt(float(var) / n)
torch.testing.assert_close(torch.cov(torch.stack([x, v])), cov, rtol=0.03, atol=2e-3)
print("closed-form covariance:\n", cov.numpy().round(4), "\nsimulated:\n", torch.cov(torch.stack([x, v])).numpy().round(4))

# %% [markdown]
# ## SSCS against Euler-Maruyama, with the exact velocity score
#
# The paper's claim (sec. 5.1): at equal network evaluations its splitting sampler is far more accurate. Sliced
# Wasserstein distance of 4000 samples to fresh data:

# %%
den = mix.cld_denoiser(p)
ref = mix.sample(4000, torch.Generator().manual_seed(1))[0]
sw = {}
for steps in (10, 20):
    for sampler in ("sscs", "cld_em"):
        gens = sample_generators(0, 4000)
        u_T = p.prior_sample((4000, 4), gens, dtype=torch.float64)
        sw[sampler, steps] = sliced_wasserstein(sample(den, u_T, sampler, steps, generator=gens), ref)
print({f"{k[0]} @ {k[1]}": round(val, 3) for k, val in sw.items()})
assert sw["sscs", 10] < 0.5 * sw["cld_em", 10] and sw["sscs", 20] < 0.5 * sw["cld_em", 20]

# %% [markdown]
# ## The flow path
#
# `FlowProcess` is the straight path, $\alpha = 1 - t$ and $\sigma = t$; by the general rule of lecture 7 it is one
# more linear SDE, so every ODE solver samples it.

# %%
flow = FlowProcess()
t = torch.linspace(0.01, 0.99, 41, dtype=torch.float64)
torch.testing.assert_close(flow.sigma(t), t), torch.testing.assert_close(flow.alpha(t), 1 - t)
f, g2 = flow.sde(t)
f_rule, g2_rule = NoiseProcess.sde(flow, t)
torch.testing.assert_close(f, f_rule), torch.testing.assert_close(g2, g2_rule)

# %% [markdown]
# Straightness (Liu et al. 2023, Def. 2.4) measures how far the ODE's paths are from straight lines. For data that
# is a single point every path is straight, $S = 0$; for the 3-component mixture the paths bend, so one Euler step
# of the exact flow lands between the modes:

# %%
z = flow.prior_sample((2000, 2), torch.Generator().manual_seed(0), dtype=torch.float64)
point = GaussianMixture([1.0], [[0.7, -0.4]], [1e-4])
s_point, _ = straightness(point.denoiser(flow), z, steps=50)
s_mix, _ = straightness(mix.denoiser(flow), z, steps=200)
print(f"straightness: a point {s_point:.2e}, the mixture {s_mix:.3f}")
assert s_point < 1e-8 < 1e-3 < s_mix

# %% [markdown]
# ## Training by flow matching
#
# An MLP predicting the velocity, 2000 steps of $\mathcal{L}_{FM}$; Euler's method with 20 steps then draws the
# mixture's weights:

# %%
torch.manual_seed(0)
model = Denoiser(MLP(2), flow, prediction="flow")
loss_fn, opt = FlowMatchingLoss(), torch.optim.Adam(model.parameters(), lr=2e-3)
g = torch.Generator().manual_seed(2)
for step in range(2000):
    loss = loss_fn(model, mix.sample(256, g)[0].float(), None, g).mean()
    opt.zero_grad(), loss.backward(), opt.step()
x_T = flow.prior_sample((4000, 2), torch.Generator().manual_seed(3))
with torch.no_grad():
    x = sample(model, x_T, "euler", steps=20)
    one = sample(model, x_T, "euler", steps=1)
w = weights(x)
print(f"trained flow, 20 Euler steps: weights {w.numpy().round(3)} (data {mix.w.numpy()})")
assert 0.5 * float((w - mix.w).abs().sum()) < 0.05

fig, axes = plt.subplots(1, 3, figsize=(14, 4), sharex=True, sharey=True)
axes[0].scatter(*ref.T, s=1), axes[0].set_title("data")
axes[1].scatter(*x.T, s=1), axes[1].set_title("flow matching, 20 Euler steps")
axes[2].scatter(*one.T, s=1), axes[2].set_title("1 Euler step: curved paths cut short")
plt.tight_layout()
plt.show()
