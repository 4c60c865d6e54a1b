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
# # 2. DDPM: training and sampling
#
# The reverse process $p_\theta(x_{t-1} \mid x_t) = \mathcal{N}(\mu_\theta(x_t, t), \sigma_t^2 I)$ is chosen in the
# form of the posterior of lecture 1, with the unknown $x_0$ replaced by a prediction. Ho et al. (2020) predict the
# noise: $x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\epsilon)/\sqrt{\bar\alpha_t}$, which gives (eq. 11)
#
# $$\mu_\theta(x_t, t) = \frac{1}{\sqrt{\alpha_t}}\left(x_t - \frac{\beta_t}{\sqrt{1 - \bar\alpha_t}}\,
# \epsilon_\theta(x_t, t)\right),$$
#
# and the bound's terms reduce, with the weights dropped, to $L_{\text{simple}} = \mathbb{E}_{t, x_0, \epsilon}
# \left\| \epsilon - \epsilon_\theta(\sqrt{\bar\alpha_t} x_0 + \sqrt{1 - \bar\alpha_t}\,\epsilon, t)\right\|^2$
# (eq. 14). In the library a `Denoiser` wraps any network and turns its output, whatever it predicts, into
# `Prediction(x0, eps)`; `SimpleLoss` is $L_{\text{simple}}$ and `ddpm_sample` is Algorithm 2.

# %%
import matplotlib.pyplot as plt
import torch

from denoisekit import MLP, Denoiser, DiscreteVP, GaussianMixture, SimpleLoss, ddpm_sample, ddpm_step, sampling_times

process = DiscreteVP("linear", T=1000)
gmm = GaussianMixture([0.3, 0.7], [[-1.0, 0.0], [1.0, 0.5]], [0.2, 0.3])   # the data, with a closed-form density
exact = gmm.denoiser(process)                                              # its exact E[x_0 | x_t]

# %% [markdown]
# ## One reverse step, checked against Algorithm 2
#
# `ddpm_step(model, x_t, t, t - 1, z)` draws $x_{t-1} = \mu_\theta(x_t, t) + \sigma_t z$. Below, $\mu$ is rebuilt
# from eq. 11 with the $\beta$ of lecture 1 and the model's $\epsilon$, and $\sigma_t^2 = \beta_t$ or
# $\tilde\beta_t$.

# %%
betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
alpha_bar = torch.cumprod(1 - betas, 0)
g = torch.Generator().manual_seed(0)
x_t, z = torch.randn(8, 2, generator=g), torch.randn(8, 2, generator=g)
t = 400
eps = exact(x_t, torch.full((8,), float(t))).eps.double()
mu = (x_t - betas[t] / (1 - alpha_bar[t]).sqrt() * eps) / (1 - betas[t]).sqrt()
tilde_beta = (1 - alpha_bar[t - 1]) / (1 - alpha_bar[t]) * betas[t]
for variance, var in [("beta", betas[t]), ("beta_tilde", tilde_beta)]:
    step, _ = ddpm_step(exact, x_t, t, t - 1, z, variance=variance)   # (x_{t-1}, the Prediction)
    assert torch.allclose(step.double(), mu + var.sqrt() * z, atol=1e-6), variance
print("ddpm_step = Algorithm 2, line 4, for both variances")

# %% [markdown]
# ## Sampling with the exact model
#
# With the exact $\mathbb{E}[x_0 \mid x_t]$ in place of a network, 1000 ancestral steps must reproduce the data.
# The check: the samples' fraction in the left component (weight 0.3) and their mean, against the data's, within
# four Monte-Carlo standard errors.

# %%
n = 4000
x_T = process.prior_sample((n, 2), torch.Generator().manual_seed(1))
times = sampling_times(process, 1000)
x = ddpm_sample(exact, x_T, times, variance="beta_tilde", generator=torch.Generator().manual_seed(2))
left = float((x[:, 0] < 0).double().mean())
assert abs(left - 0.3) < 4 * (0.3 * 0.7 / n) ** 0.5, left
data_mean = 0.3 * torch.tensor([-1.0, 0.0]) + 0.7 * torch.tensor([1.0, 0.5])
assert ((x.mean(0) - data_mean).abs() < 4 * x.std(0) / n**0.5).all()
print(f"left-component share {left:.3f} (0.3); mean {x.mean(0).tolist()}")

# %% [markdown]
# ## Training a network
#
# A small MLP learns $\epsilon_\theta$ with $L_{\text{simple}}$ (Algorithm 1: draw $x_0$, $t$, $\epsilon$; step on
# the squared error). Two thousand steps take a few seconds on a CPU.

# %%
torch.manual_seed(0)
model = Denoiser(MLP(2), process, prediction="eps")
loss_fn = SimpleLoss()
opt = torch.optim.Adam(model.parameters(), lr=2e-3)
g = torch.Generator().manual_seed(3)
losses = []
for step in range(2000):
    x0 = gmm.sample(256, g)[0].float()
    loss = loss_fn(model, x0, None, g).mean()
    opt.zero_grad(), loss.backward(), opt.step()
    losses.append(loss.item())
print(f"L_simple: first 100 steps {sum(losses[:100]) / 100:.3f}, last 100 {sum(losses[-100:]) / 100:.3f}")

# %% [markdown]
# The trained model's ancestral samples: the share of the left component and the mean log-density of the samples
# under the true mixture, against the same figures for true data.

# %%
with torch.no_grad():
    x_model = ddpm_sample(model, x_T.float(), times, variance="beta", generator=torch.Generator().manual_seed(4))
left_model = float((x_model[:, 0] < 0).float().mean())
ll_model = float(gmm.log_density(x_model.double()).mean())
ll_data = float(gmm.log_density(gmm.sample(n, torch.Generator().manual_seed(5))[0]).mean())
print(f"trained model: left share {left_model:.3f}, mean log-density {ll_model:.3f} (data {ll_data:.3f})")
assert abs(left_model - 0.3) < 0.08 and ll_model > ll_data - 0.5

fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
axes[0].plot(torch.tensor(losses).view(-1, 20).mean(1)), axes[0].set_title("$L_{simple}$ (means of 20 steps)")
for ax, pts, title in [(axes[1], gmm.sample(n, torch.Generator().manual_seed(5))[0], "data"),
                       (axes[2], x, "exact model, 1000 steps"), (axes[3], x_model, "trained MLP, 1000 steps")]:
    ax.scatter(*pts.T, s=1), ax.set_title(title), ax.set_xlim(-2.2, 2.2), ax.set_ylim(-1.5, 2)
plt.tight_layout()
plt.show()
