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
# # 3. Improved DDPM and likelihoods
#
# Nichol & Dhariwal (2021) made DDPM a good likelihood model with three changes: the cosine schedule (lecture 1),
# a learned reverse variance, and a loss that trains it on the variational bound. This lecture computes the pieces
# and measures likelihood two ways: the bound in bits per dimension and the exact log-likelihood of the
# probability-flow ODE.
#
# ## A learned variance between $\beta_t$ and $\tilde\beta_t$
#
# The network outputs $v$ per dimension and the variance interpolates in the log domain (eq. 15):
#
# $$\Sigma_\theta(x_t, t) = \exp\left(v \log \beta_t + (1 - v) \log \tilde\beta_t\right).$$

# %%
import math

import matplotlib.pyplot as plt
import torch

from denoisekit import MLP, Denoiser, DiscreteVP, GaussianMixture, HybridLoss, SimpleLoss, ode_log_likelihood
from denoisekit import variational_bound
from denoisekit.vlb import interpolate_log_variance, log_variance_ends

process = DiscreteVP("cosine", T=1000)
t, s = torch.tensor([500.0]), torch.tensor([499.0])
log_beta, log_tilde, _ = log_variance_ends(process, t, s)
ab = process.alpha(torch.tensor([500.0, 499.0])) ** 2
beta = 1 - ab[0] / ab[1]
assert torch.allclose(log_beta.exp(), beta) and torch.allclose(log_tilde.exp(), (1 - ab[1]) / (1 - ab[0]) * beta)
v = torch.tensor([0.0, 0.25, 1.0])
assert torch.allclose(interpolate_log_variance(v, log_beta, log_tilde), v * log_beta + (1 - v) * log_tilde)
print(f"t = 500: beta {beta.item():.5f}, beta-tilde {log_tilde.exp().item():.5f}")

# %% [markdown]
# ## The bound in bits per dimension
#
# `variational_bound` adds $L_T$, the $T - 1$ KL terms and the decoder $L_0$, divided by $D \ln 2$. Summing all
# 1000 terms costs 1000 network evaluations per example; with `terms=K` it cuts the steps into $K$ runs and draws one
# step from each, weighted by the run's length, an unbiased estimate for $K + 1$ evaluations. Both, on Gaussian data
# whose exact denoiser and density we know:

# %%
gauss = GaussianMixture([1.0], [[0.3, -0.2, 0.1, 0.4]], [0.5])
exact = gauss.denoiser(process)
x, _ = gauss.sample(128, torch.Generator().manual_seed(0))
true_nll = float(-gauss.log_density(x).mean() / (4 * math.log(2)))
full = variational_bound(exact, x, variance="beta_tilde", decoder="gaussian", generator=torch.Generator().manual_seed(1))
strata = torch.stack([variational_bound(exact, x, variance="beta_tilde", decoder="gaussian", terms=50,
                                        generator=torch.Generator().manual_seed(10 + k)).total.mean()
                      for k in range(20)])
print(f"true NLL {true_nll:.4f}, full bound {full.total.mean():.4f}, "
      f"stratified (50 terms) {strata.mean():.4f} +- {strata.std() / 20 ** 0.5:.4f}")
assert full.total.mean() > true_nll
# unbiased: the stratified estimates agree with the full sum within 4 standard errors (plus the draws of x_t)
assert abs(strata.mean() - full.total.mean()) < 4 * strata.std() / 20 ** 0.5 + 0.02

# %% [markdown]
# Where the bound's mass lies matters for how to estimate it: $L_t$ is largest at the first steps, so a uniform $t$
# wastes most draws. Nichol & Dhariwal sample $t$ with $p_t \propto \sqrt{\mathbb{E}[L_t^2]}$ (sec. 3.3). From the
# full table of terms we can compute the variance of both one-draw estimators of $\sum_t L_t$ exactly, the
# importance weights taken, as in training, from an earlier noisy estimate (another draw of every term):

# %%
L = full.terms[1:]                                      # batch means of L_{t-1} for t = 2 .. T
earlier = variational_bound(exact, x, variance="beta_tilde", decoder="gaussian",
                            generator=torch.Generator().manual_seed(7)).terms[1:]
uniform_var = float((len(L) * L).var(unbiased=False))   # T L_t with t uniform
p = earlier.abs() / earlier.abs().sum()                 # p_t from the earlier estimate
importance_var = float(((L / p) ** 2 * p).sum() - L.sum() ** 2)   # of L_t / p_t with t ~ p
print(f"variance of one-draw estimates of sum L_t: uniform {uniform_var:.3g}, importance {importance_var:.3g}")
assert importance_var < 0.1 * uniform_var

# %% [markdown]
# ## The probability-flow ODE's exact likelihood
#
# A diffusion model also defines a deterministic map from noise to data (lecture 7), and its density follows from
# the instantaneous change of variables, $\frac{d \log p_t(x_t)}{dt} = -\nabla \cdot f_\theta(x_t, t)$.
# `ode_log_likelihood` integrates it with dopri5 and the exact trace (or Hutchinson's estimate). With the exact
# denoiser it must return the data's own log-density:

# %%
ll = ode_log_likelihood(exact, x[:16], probe="exact")
t0 = torch.tensor(0.0, dtype=torch.float64)
reference = gauss.log_density(x[:16], process.alpha(t0), process.sigma(t0))
print(f"ODE log-likelihood {ll.mean():.4f}, closed form {reference.mean():.4f} nats")
assert torch.allclose(ll, reference, atol=0.04)

# %% [markdown]
# ## Training with $L_{\text{hybrid}}$
#
# `HybridLoss` is $L_{\text{simple}} + \lambda L_{\text{vlb}}$ with $\lambda = 0.001$ and a stop-gradient on the mean
# inside $L_{\text{vlb}}$, so the bound trains only $v$. A network with a learned variance outputs twice the data's
# channels. Two small MLPs on a 2-D mixture, the same steps, one per loss:

# %%
gmm = GaussianMixture([0.3, 0.7], [[-1.0, 0.0], [1.0, 0.5]], [0.2, 0.3])
models = {"L_simple, fixed beta-tilde": (lambda: Denoiser(MLP(2), process), SimpleLoss()),
          "L_hybrid, learned": (lambda: Denoiser(MLP(2, out_dim=4), process, learned_variance=True), HybridLoss())}
bounds = {}
for name, (build, loss_fn) in models.items():
    torch.manual_seed(0)
    model = build()
    opt, g = torch.optim.Adam(model.parameters(), lr=2e-3), torch.Generator().manual_seed(1)
    for step in range(1500):
        loss = loss_fn(model, gmm.sample(256, g)[0].float(), None, g).mean()
        opt.zero_grad(), loss.backward(), opt.step()
    test = gmm.sample(512, torch.Generator().manual_seed(2))[0].float()
    bounds[name] = variational_bound(model, test, decoder="gaussian", terms=100,
                                     generator=torch.Generator().manual_seed(3))
    print(f"{name}: bound {bounds[name].total.mean():.3f} bits/dim")
data_nll = float(-gmm.log_density(test.double()).mean() / (2 * math.log(2)))
print(f"the data's true NLL: {data_nll:.3f} bits/dim")
assert all(b.total.mean() > data_nll for b in bounds.values())   # bounds stay above the truth
simple, hybrid = (float(b.total.mean()) for b in bounds.values())
assert hybrid < simple - 0.3    # the learned variance tightens the bound (Nichol & Dhariwal, Table 2)

plt.figure(figsize=(6, 3))
plt.semilogy(full.terms.clamp(min=1e-9))
plt.xlabel("t"), plt.ylabel("bits/dim"), plt.title(r"$L_{t-1}$, exact model, cosine schedule")
plt.show()
