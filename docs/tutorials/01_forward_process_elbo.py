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
# # 1. The forward process and the ELBO
#
# DDPM (Ho et al. 2020) destroys data by a fixed Markov chain of Gaussian steps and learns to undo it. This lecture
# builds the chain, its closed form $q(x_t \mid x_0)$, the posterior $q(x_{t-1} \mid x_t, x_0)$ and the variational
# bound on $-\log p(x_0)$, each with the library call that computes it and a check against an independent answer.
#
# The chain adds noise with variances $\beta_1, \dots, \beta_T$:
#
# $$q(x_t \mid x_{t-1}) = \mathcal{N}\left(x_t;\ \sqrt{1 - \beta_t}\, x_{t-1},\ \beta_t I\right).$$
#
# `DiscreteVP("linear", T=1000)` is DDPM's process with $\beta$ rising linearly from $10^{-4}$ to $0.02$. The library
# indexes steps $t = 0, \dots, T-1$ and calls the data $t = -1$.

# %%
import math

import matplotlib.pyplot as plt
import torch

from denoisekit import DiscreteVP, GaussianMixture, variational_bound
from denoisekit.vlb import normal_kl

torch.set_default_dtype(torch.float64)
process = DiscreteVP("linear", T=1000)
cosine = DiscreteVP("cosine", T=1000)

# %% [markdown]
# ## The closed form $q(x_t \mid x_0)$
#
# With $\alpha_t = 1 - \beta_t$ and $\bar\alpha_t = \prod_{s \le t} \alpha_s$, composing Gaussian steps gives
# (Ho et al. 2020, eq. 4)
#
# $$q(x_t \mid x_0) = \mathcal{N}\left(x_t;\ \sqrt{\bar\alpha_t}\, x_0,\ (1 - \bar\alpha_t) I\right),$$
#
# which the library writes as $x_t = \alpha(t)\, x_0 + \sigma(t)\, \epsilon$: `process.alpha(t)` is
# $\sqrt{\bar\alpha_t}$ and `process.sigma(t)` is $\sqrt{1 - \bar\alpha_t}$. First, $\bar\alpha_t$ against the
# product of the $\beta$ computed here from the paper's numbers:

# %%
T = 1000
betas = torch.linspace(1e-4, 0.02, T)                      # Ho et al. 2020, section 4
alpha_bar = torch.cumprod(1 - betas, 0)
steps = torch.arange(T, dtype=torch.float64)
assert torch.allclose(process.alpha(steps) ** 2, alpha_bar, rtol=1e-10)
assert torch.allclose(process.alpha(steps) ** 2 + process.sigma(steps) ** 2, torch.ones(T))  # variance preserving
print(f"alpha_bar at t = 0, 499, 999: {alpha_bar[0]:.5f}, {alpha_bar[499]:.4f}, {alpha_bar[999]:.2e}")

# %% [markdown]
# Then the marginal itself, by Monte Carlo: run the chain step by step from a fixed $x_0$ for 20,000 walkers and
# compare the mean and variance of $x_t$ with $\alpha(t) x_0$ and $\sigma(t)^2$.

# %%
g = torch.Generator().manual_seed(0)
x0 = torch.tensor([1.5, -0.5])
x = x0.expand(20000, 2).clone()
for t in range(500):
    x = (1 - betas[t]).sqrt() * x + betas[t].sqrt() * torch.randn(x.shape, generator=g)
t = torch.tensor(499.0)
mean_err = (x.mean(0) - process.alpha(t) * x0).abs().max()
var_err = (x.var(0) - process.sigma(t) ** 2).abs().max()
print(f"after 500 steps: |mean - alpha x0| = {mean_err:.4f}, |var - sigma^2| = {var_err:.4f}")
assert mean_err < 4 * float(process.sigma(t)) / math.sqrt(20000) and var_err < 0.03
x_direct = process.q_sample(x0.expand(20000, 2), t.expand(20000), torch.randn(20000, 2, generator=g))
assert (x_direct.mean(0) - x.mean(0)).abs().max() < 0.03

# %% [markdown]
# The linear schedule spends many steps near pure noise; the cosine schedule of Nichol & Dhariwal (2021),
# $\bar\alpha_t = f(t)/f(0)$ with $f(t) = \cos^2\left(\frac{t/T + s}{1 + s} \frac{\pi}{2}\right)$, destroys
# information more evenly:

# %%
u = (steps + 1) / T
f = torch.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
assert torch.allclose(cosine.alpha(steps) ** 2, (f / torch.cos(torch.tensor(0.008 / 1.008 * math.pi / 2)) ** 2)
                      .clamp(max=1), atol=2e-3)

gmm = GaussianMixture([0.3, 0.7], [[-1.0, 0.0], [1.0, 0.5]], [0.2, 0.3])
data, _ = gmm.sample(2000, torch.Generator().manual_seed(1))
fig, axes = plt.subplots(1, 5, figsize=(15, 3))
axes[0].plot(alpha_bar, label="linear")
axes[0].plot(cosine.alpha(steps) ** 2, label="cosine")
axes[0].set_title(r"$\bar\alpha_t$"), axes[0].legend()
for ax, step in zip(axes[1:], [0, 100, 300, 999]):
    tt = torch.full((2000,), float(step))
    xt = process.q_sample(data, tt, torch.randn(data.shape, generator=g))
    ax.scatter(*xt.T, s=1), ax.set_title(f"$x_t$, t = {step}"), ax.set_xlim(-3, 3), ax.set_ylim(-3, 3)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The posterior $q(x_{t-1} \mid x_t, x_0)$
#
# Given $x_0$, the reverse step is Gaussian too (eq. 6-7):
#
# $$\tilde\mu_t = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1 - \bar\alpha_t} x_0 + \frac{\sqrt{\alpha_t}\,(1 -
# \bar\alpha_{t-1})}{1 - \bar\alpha_t} x_t, \qquad \tilde\beta_t = \frac{1 - \bar\alpha_{t-1}}{1 - \bar\alpha_t}
# \beta_t .$$
#
# The check does not use this formula: it conditions the joint Gaussian of $(x_{t-1}, x_t)$ directly, adding the
# precisions of $q(x_{t-1} \mid x_0)$ and of the step $q(x_t \mid x_{t-1})$ as a function of $x_{t-1}$.

# %%
step = 300
x_t = torch.tensor([[0.3, -1.2]])
mean, var = process.posterior(x_t, x0[None], torch.tensor([float(step)]), torch.tensor([float(step - 1)]))
prior_var = 1 - alpha_bar[step - 1]
precision = 1 / prior_var + (1 - betas[step]) / betas[step]
bayes_mean = (alpha_bar[step - 1].sqrt() * x0 / prior_var + (1 - betas[step]).sqrt() * x_t / betas[step]) / precision
assert torch.allclose(var, 1 / precision) and torch.allclose(mean, bayes_mean)
print(f"posterior variance {float(var):.6f} = beta-tilde; beta_t = {float(betas[step]):.6f}")

# %% [markdown]
# ## The variational bound
#
# Training maximises the evidence lower bound; in the paper's decomposition (eq. 5)
#
# $$\begin{aligned} -\log p_\theta(x_0) \le\ & \underbrace{D_{KL}(q(x_T \mid x_0) \,\|\, p(x_T))}_{L_T} +
# \sum_{t > 1} \underbrace{D_{KL}(q(x_{t-1} \mid x_t, x_0) \,\|\, p_\theta(x_{t-1} \mid x_t))}_{L_{t-1}} \\
# & \underbrace{- \log p_\theta(x_0 \mid x_1)}_{L_0}. \end{aligned}$$
#
# Every $L_{t-1}$ is a KL divergence between Gaussians, `denoisekit.vlb.normal_kl`; first against
# `torch.distributions`:

# %%
m1, lv1, m2, lv2 = torch.tensor(0.3), torch.tensor(-1.0), torch.tensor(-0.2), torch.tensor(0.5)
reference = torch.distributions.kl_divergence(torch.distributions.Normal(m1, (lv1 / 2).exp()),
                                              torch.distributions.Normal(m2, (lv2 / 2).exp()))
assert torch.allclose(normal_kl(m1, lv1, m2, lv2), reference)

# %% [markdown]
# Now the whole bound, for data whose density we know: a Gaussian in 4 dimensions and its exact denoiser
# $\mathbb{E}[x_0 \mid x_t]$ (the best any network could learn). `variational_bound` sums $L_T$, all 999 terms
# $L_{t-1}$ and a Gaussian decoder $L_0$ in bits per dimension. A bound must lie above the true negative
# log-likelihood $-\log_2 p(x_0) / D$, and with the exact model and $\sigma^2_t = \beta_t$ it is close.

# %%
gauss = GaussianMixture([1.0], [[0.3, 0.3, 0.3, 0.3]], [0.5])
x, _ = gauss.sample(256, torch.Generator().manual_seed(0))
true_nll = -gauss.log_density(x) / (4 * math.log(2))
bound = variational_bound(gauss.denoiser(process), x, variance="beta", decoder="gaussian",
                          generator=torch.Generator().manual_seed(1))
gap = float(bound.total.mean() - true_nll.mean())
print(f"true NLL {true_nll.mean():.4f} bits/dim, bound {bound.total.mean():.4f} (gap {gap:.4f}); "
      f"L_T {bound.prior.mean():.2e}, L_0 {bound.decoder.mean():.3f}")
assert 0 < gap < 0.4

plt.figure(figsize=(6, 3))
plt.semilogy(bound.terms.clamp(min=1e-8))
plt.xlabel("t"), plt.ylabel("bits/dim"), plt.title(r"$L_{t-1}$ of the exact model")
plt.show()

# %% [markdown]
# Most of the bound sits at small $t$: the last few denoising steps carry the fine detail. Lecture 3 (improved DDPM)
# learns the variances and samples the terms by importance to tighten it.
