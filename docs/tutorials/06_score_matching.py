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
# # 6. Score matching, Langevin dynamics and NCSN
#
# The score $\nabla_x \log p(x)$ needs no normalising constant, and Langevin dynamics samples from it:
#
# $$x_{i+1} = x_i + \frac{\epsilon}{2} \nabla_x \log p(x_i) + \sqrt{\epsilon}\, z_i .$$
#
# Score matching learns it from data. Explicit score matching (Hyvärinen 2005) minimises
# $\mathbb{E}\left[\operatorname{tr}(\nabla_x s_\theta) + \tfrac12 \|s_\theta\|^2\right]$; sliced score matching
# (Song et al. 2019) replaces the trace by random projections; denoising score matching (Vincent 2011) matches the
# score of the noised data, whose target is known:
#
# $$\mathbb{E}_{x, \tilde x}\left\| s_\theta(\tilde x, \sigma) + \frac{\tilde x - x}{\sigma^2} \right\|^2,
# \qquad \tilde x = x + \sigma \epsilon .$$
#
# NCSN (Song & Ermon 2019) learns one network over a ladder of noise levels and samples by annealed Langevin
# dynamics down the ladder. In the library a model's score is $s = -\epsilon / \sigma$ whatever it predicts.

# %%
import matplotlib.pyplot as plt
import torch

from denoisekit import MLP, Denoiser, DSMLoss, GaussianMixture, NoiseLadder, sample

gmm = GaussianMixture([0.3, 0.7], [[-1.0, -0.5], [1.0, 0.5]], [0.25, 0.35])

# %% [markdown]
# ## The diffused score, two ways
#
# For $x_t = \alpha x_0 + \sigma \epsilon$, Tweedie's formula gives the score from the posterior mean,
# $\nabla \log p_t(x_t) = (\alpha\,\mathbb{E}[x_0 \mid x_t] - x_t)/\sigma^2$; `GaussianMixture.score` computes it so.
# Automatic differentiation of the closed-form log-density is an independent answer:

# %%
x = (3 * torch.randn(64, 2, generator=torch.Generator().manual_seed(0))).double().requires_grad_(True)
alpha, sigma = 0.8, 0.6
autograd_score, = torch.autograd.grad(gmm.log_density(x, alpha, sigma).sum(), x)
assert torch.allclose(gmm.score(x.detach(), alpha, sigma), autograd_score, atol=1e-10)
print("Tweedie's score = the gradient of log p_t")

# %% [markdown]
# ## Langevin dynamics with the exact score
#
# At a small step the chain's samples take the right shape inside each mode; the check is the right component's
# mean and spread against the mixture's (1, 0.5) and 0.35. Across modes it fails: the barrier between them is
# crossed too rarely, so the share of each mode stays near the share of the starting points that fell into it.
# This is the failure that led Song & Ermon to anneal the noise level.

# %%
g = torch.Generator().manual_seed(1)
x = 2 * torch.randn(4000, 2, generator=g, dtype=torch.float64)
step = 1e-3
for _ in range(3000):
    x = x + step / 2 * gmm.score(x, 1.0, 0.0 + 1e-3) + step ** 0.5 * torch.randn(x.shape, generator=g,
                                                                                 dtype=torch.float64)
left = float((x[:, 0] < 0).double().mean())
right = x[x[:, 0] > 0]
print(f"right mode: mean {right.mean(0).tolist()}, spread {right.std(0).tolist()}; left share {left:.3f} (weight 0.3)")
assert (right.mean(0) - torch.tensor([1.0, 0.5], dtype=torch.float64)).abs().max() < 0.03
assert (right.std(0) / 0.35 - 1).abs().max() < 0.06

# %% [markdown]
# ## NCSN: denoising score matching over a noise ladder
#
# `NoiseLadder` holds the geometric levels $\sigma_1 > \dots > \sigma_L$; `DSMLoss` weights each level by
# $\lambda(\sigma) = \sigma^2$, which in the scaled score $u = \sigma s$ reads $\frac12 \|u + \epsilon\|^2$.

# %%
torch.manual_seed(0)
ladder = NoiseLadder(sigma_min=0.05, sigma_max=3.0, levels=10)
model = Denoiser(MLP(2), ladder)
loss_fn, opt = DSMLoss(), torch.optim.Adam(model.parameters(), lr=2e-3)
g = torch.Generator().manual_seed(0)
for _ in range(1500):
    loss = loss_fn(model, gmm.sample(256, g)[0].float(), None, g).mean()
    opt.zero_grad(), loss.backward(), opt.step()

# %% [markdown]
# The learned score against the exact diffused score at three rungs, on points drawn from each rung's own
# distribution (relative error of the field):

# %%
rel = {}
with torch.no_grad():
    for rung in (0, 4, 9):
        t = torch.full((2000,), float(rung))
        s_level = float(ladder.sigma(t[:1]))
        pts = gmm.sample(2000, torch.Generator().manual_seed(2))[0] + s_level * torch.randn(2000, 2, dtype=torch.float64)
        learned = -model(pts.float(), t).eps / s_level
        true = gmm.score(pts, 1.0, s_level)
        rel[s_level] = float((learned.double() - true).norm() / true.norm())
print({round(k, 3): round(v, 3) for k, v in rel.items()})
# the smallest level is the hardest (the steepest field, the fewest of DSM's effective samples near each point)
levels = sorted(rel)
assert rel[levels[0]] < 0.6 and rel[levels[1]] < 0.25 and rel[levels[2]] < 0.2

# %% [markdown]
# Annealed Langevin dynamics (Song & Ermon 2019, Alg. 1): `n_steps` Langevin steps per rung with step
# $\alpha_i = \epsilon\, \sigma_i^2 / \sigma_L^2$, from the largest level to the smallest.

# %%
x_T = ladder.prior_sample((2000, 2), torch.Generator().manual_seed(3))
with torch.no_grad():
    x = sample(model, x_T, "ald", steps=10, eps=1e-4, n_steps=50, generator=torch.Generator().manual_seed(4))
ll = float(gmm.log_density(x.double()).mean())
ll_data = float(gmm.log_density(gmm.sample(2000, torch.Generator().manual_seed(5))[0]).mean())
print(f"mean log-density: samples {ll:.3f}, data {ll_data:.3f}, prior draws {gmm.log_density(x_T.double()).mean():.1f}")
assert ll > ll_data - 1.5

fig, axes = plt.subplots(1, 3, figsize=(14, 4))
grid = torch.stack(torch.meshgrid(torch.linspace(-2.5, 2.5, 21), torch.linspace(-2.5, 2.5, 21), indexing="xy"), -1)
field = gmm.score(grid.reshape(-1, 2).double(), 1.0, 0.3)
axes[0].quiver(grid[..., 0], grid[..., 1], *field.T.reshape(2, 21, 21), color="C0")
axes[0].set_title(r"exact score, $\sigma = 0.3$")
axes[1].scatter(*x_T.T, s=1), axes[1].set_title("prior draws")
axes[2].scatter(*x.T, s=1), axes[2].set_title("annealed Langevin, 10 x 50 steps")
plt.tight_layout()
plt.show()
