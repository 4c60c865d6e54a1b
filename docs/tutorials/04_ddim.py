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
# # 4. DDIM: fewer steps, inversion and interpolation
#
# Song, Meng & Ermon (2021) noticed that $L_{\text{simple}}$ only constrains the marginals $q(x_t \mid x_0)$, so a
# whole family of non-Markovian forward processes shares DDPM's trained network. Their reverse step (eq. 12), with
# $\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\epsilon_\theta)/\sqrt{\bar\alpha_t}$, is
#
# $$x_{s} = \sqrt{\bar\alpha_{s}}\,\hat x_0 + \sqrt{1 - \bar\alpha_{s} - \sigma_t^2}\;\epsilon_\theta(x_t, t) +
# \sigma_t z, \qquad \sigma_t(\eta) = \eta \sqrt{\frac{1 - \bar\alpha_{s}}{1 - \bar\alpha_t}}
# \sqrt{1 - \frac{\bar\alpha_t}{\bar\alpha_{s}}}.$$
#
# $\eta = 1$ is DDPM's ancestral step; $\eta = 0$ is deterministic, and it runs on any sub-sequence of the steps.

# %%
import matplotlib.pyplot as plt
import torch

from denoisekit import DiscreteVP, GaussianMixture, ddim_interpolate, ddim_invert, ddim_step, ddpm_step, sample
from denoisekit import sampling_times
from denoisekit.samplers.ddim import ddim_sample
from denoisekit.samplers.rk45 import rk45_sample

torch.set_default_dtype(torch.float64)
process = DiscreteVP("linear", T=1000)
gmm = GaussianMixture([0.3, 0.7], [[-1.0, 0.0], [1.0, 0.5]], [0.2, 0.3])
exact = gmm.denoiser(process)

# %% [markdown]
# ## The step, checked against eq. 12
#
# A jump of 100 steps at $\eta = 0$ and at $\eta = 0.5$, rebuilt from the formula; then $\eta = 1$ on consecutive
# steps against DDPM's ancestral step with $\sigma_t^2 = \tilde\beta_t$ and the same noise.

# %%
g = torch.Generator().manual_seed(0)
x_t, z = torch.randn(6, 2, generator=g), torch.randn(6, 2, generator=g)
t, s = 600, 500
ab_t, ab_s = (process.alpha(torch.tensor(float(u))) ** 2 for u in (t, s))
pred = exact(x_t, torch.full((6,), float(t)))
for eta in (0.0, 0.5):
    sigma = eta * ((1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)).sqrt()
    expected = ab_s.sqrt() * pred.x0 + (1 - ab_s - sigma**2).sqrt() * pred.eps + sigma * z
    step, _ = ddim_step(exact, x_t, t, s, eta=eta, noise=z)
    assert torch.allclose(step, expected, atol=1e-10), eta
step, _ = ddim_step(exact, x_t, t, t - 1, eta=1.0, noise=z)
ancestral, _ = ddpm_step(exact, x_t, t, t - 1, z, variance="beta_tilde")
assert torch.allclose(step, ancestral, atol=1e-10)
print("ddim_step = eq. 12 at eta 0 and 0.5; at eta 1 it is DDPM's step")

# %% [markdown]
# ## $\eta = 0$ integrates the probability-flow ODE
#
# Deterministic DDIM is Euler's method on an ODE in $\tilde x = x / \alpha$ against the noise level
# $\sigma / \alpha$ (lecture 7). With the exact denoiser its endpoints converge, as the steps grow, to those of an
# adaptive dopri5 solve of the same ODE at tight tolerance:

# %%
x_T = process.prior_sample((512, 2), torch.Generator().manual_seed(1))
reference = rk45_sample(exact, x_T, sampling_times(process, 2), rtol=1e-8, atol=1e-8)
errors = {}
for steps in (5, 10, 20, 50, 100, 200):
    x = ddim_sample(exact, x_T, sampling_times(process, steps, "uniform"))
    errors[steps] = float((x - reference).norm(dim=1).mean())
print({k: round(v, 4) for k, v in errors.items()})
values = list(errors.values())
assert all(b < a for a, b in zip(values, values[1:])) and errors[200] < 0.01

# %% [markdown]
# ## Inversion and interpolation
#
# Because the map is deterministic, it can be run upward: `ddim_invert` encodes data into the noise that decodes to
# it (each step solves its implicit equation by a few fixed-point iterations), and `ddim_interpolate` slerps
# between two encodings and decodes every frame.

# %%
x0 = gmm.sample(8, torch.Generator().manual_seed(2))[0]
times = sampling_times(process, 100)
z_T = ddim_invert(exact, x0, times.flip(0))
back = ddim_sample(exact, z_T, times)
rel = float((back - x0).norm() / x0.norm())
print(f"encode then decode (100 steps): relative error {rel:.2e}; |z_T| per point {z_T.norm(dim=1).mean():.2f}")
assert rel < 1e-3

frames = ddim_interpolate(exact, x0[:1], x0[1:2], times, frames=9)
assert torch.allclose(frames[0], x0[:1], atol=1e-3) and torch.allclose(frames[-1], x0[1:2], atol=1e-3)

fig, axes = plt.subplots(1, 3, figsize=(14, 4))
axes[0].loglog(list(errors), values, "o-"), axes[0].set_xlabel("steps"), axes[0].set_ylabel("mean error")
axes[0].set_title("DDIM ($\\eta = 0$) vs the ODE's solution")
data = gmm.sample(2000, torch.Generator().manual_seed(3))[0]
axes[1].scatter(*data.T, s=1, alpha=0.3, label="data")
axes[1].scatter(*sample(exact, x_T, "ddim", steps=10).T, s=2, label="DDIM, 10 steps"), axes[1].legend()
axes[2].scatter(*data.T, s=1, alpha=0.2)
axes[2].plot(*frames[:, 0].T, "o-", color="C3"), axes[2].set_title("a slerp between two encodings, decoded")
plt.tight_layout()
plt.show()
