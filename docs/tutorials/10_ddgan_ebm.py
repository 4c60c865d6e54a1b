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
# # 10. Beyond the Gaussian step: denoising diffusion GANs and recovery-likelihood EBMs
#
# DDPM's reverse step $p_\theta(x_{t-1} \mid x_t)$ is Gaussian, which is right only when the steps are small. With a
# few large steps the true $q(x_{t-1} \mid x_t) \propto q(x_t \mid x_{t-1})\, q(x_{t-1})$ is as multimodal as the
# data. Two answers:
#
# - a **denoising diffusion GAN** (Xiao et al. 2022) draws $x_0' = G_\theta(x_t, z, t)$ and then
#   $x_{t-1} \sim q(x_{t-1} \mid x_t, x_0')$, trained adversarially against a discriminator $D(x_{t-1}, x_t, t)$
#   that tells real pairs from generated ones;
# - a **diffusion recovery-likelihood EBM** (Gao et al. 2021) learns an energy $f_\theta(x, t)$ and samples the
#   conditional $p_\theta(x_{t-1} \mid x_t) \propto \exp\left(f_\theta(x_{t-1}, t) - \frac{1}{2\sigma_t^2}
#   \|x_t - \alpha_t x_{t-1}\|^2\right)$ by a short Langevin chain; the quadratic term keeps the chain unimodal-ish
#   and short.
#
# Both are checked on a 2-D mixture of four well-separated modes, where the answer is known.

# %%
import math
import tempfile

import matplotlib.pyplot as plt
import torch

from denoisekit import ArrayDataset, Denoiser, DiscreteVP, GaussianMixture, TrainConfig, Trainer, sample
from denoisekit.nets import MLP
from denoisekit.objectives import DDGAN, DDGANLoss, LangevinChain, RecoveryEBM, RecoveryLoss, real_pair, recover
from denoisekit.utils import sample_generators

mixture = GaussianMixture([0.1, 0.2, 0.3, 0.4], [[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]], [0.1] * 4)
data = mixture.sample(20000, torch.Generator().manual_seed(0))[0].float()


def weights_and_error(x):
    """(the share of samples nearest each component, the worst component mean's error over the data's spread)."""
    x = x.double()
    k = mixture.log_class_posterior(x, 1.0, 0.0).argmax(1)
    w = torch.bincount(k, minlength=4).double() / len(x)
    err = max(float((x[k == j].mean(0) - mixture.mu[j]).norm()) if (k == j).any() else math.inf for j in range(4))
    spread = math.sqrt(float((mixture.w[:, None] * (mixture.mu**2 + mixture.tau**2)).sum()) / 2)
    return float(0.5 * (w - mixture.w).abs().sum()), err / spread


settings = dict(batch_size=128, lr_schedule="cosine", warmup_steps=0, ema_decay=0.99, grad_clip=None,
                checkpoint_every=10**6, progress=False, tensorboard=False, device="cpu", log_every=10**6)
x_T = torch.randn(4000, 2, generator=torch.Generator().manual_seed(5))

# %% [markdown]
# ## The Gaussian step fails at two steps, even with the exact denoiser
#
# `DiscreteVP("vp", T)` is the paper's few-step schedule, $\bar\alpha_i = e^{-0.1 u_i - 9.95 u_i^2}$. Ancestral DDPM
# with the mixture's exact $\mathbb{E}[x_0 \mid x_t]$, the best any Gaussian step can do, puts its samples between
# the modes:

# %%
process = DiscreteVP("vp", 2)
u = 1e-3 + (1 - 1e-3) * torch.arange(1, 3, dtype=torch.float64) / 2
assert torch.allclose(process.alpha_bar, torch.exp(-0.1 * u - 9.95 * u**2))
ddpm = sample(mixture.denoiser(process), x_T, "ddpm", steps=2, schedule="uniform", generator=sample_generators(1, 4000))
print("exact DDPM at T = 2: (TV of the weights, worst mean error):", weights_and_error(ddpm))
assert weights_and_error(ddpm)[1] > 0.4

# %% [markdown]
# The DDGAN's real pairs come from the forward chain: $x_{t-1} \sim q(x_{t-1} \mid x_0)$, then
# $x_t \sim q(x_t \mid x_{t-1})$. By Monte Carlo, $x_t$ has the marginal $q(x_t \mid x_0)$ and
# $\operatorname{Cov}(x_{t-1}, x_t) = \alpha_{t|t-1} \sigma_{t-1}^2$:

# %%
n = 200000
x0 = torch.full((n, 1), 0.7, dtype=torch.float64)
t, s = torch.full((n,), 1.0, dtype=torch.float64), torch.full((n,), 0.0, dtype=torch.float64)
x_s, x_t = real_pair(process, x0, t, s, torch.Generator().manual_seed(1))
a_t, s_t, a_s, s_s = (float(f(v[0])) for f, v in ((process.alpha, t), (process.sigma, t), (process.alpha, s),
                                                 (process.sigma, s)))
assert abs(float(x_t.mean()) - a_t * 0.7) < 4 * s_t / n ** 0.5 and abs(float(x_t.var()) / s_t**2 - 1) < 0.02
cov = float(((x_s - x_s.mean()) * (x_t - x_t.mean())).mean())
assert abs(cov - a_t / a_s * s_s**2) < 0.01
print(f"Cov(x_s, x_t) = {cov:.4f}, closed form {a_t / a_s * s_s**2:.4f}")

# %% [markdown]
# ## Training the DDGAN
#
# A generator MLP reading $(x_t, z, t)$ and predicting $x_0'$, a discriminator MLP on the stacked pair; the
# non-saturating loss with an R1 penalty on real pairs. The trainer knows no GAN: the loss names its two players and
# their phases, each with its own optimizer. 2000 steps, about 40 seconds:

# %%
torch.manual_seed(0)
players = DDGAN(Denoiser(MLP(dim=2, hidden=128, depth=3, latent_dim=8), process, "x0"),
                MLP(dim=4, hidden=128, depth=3, out_dim=1))
with tempfile.TemporaryDirectory() as run:
    config = TrainConfig(steps=2000, lr=3e-4, betas=(0.5, 0.9), **settings)
    generator = Trainer(players, DDGANLoss(r1_gamma=0.5), ArrayDataset(data), run, config).train().generator
gan = sample(generator, x_T, "ddgan", steps=2, schedule="uniform", generator=sample_generators(1, 4000))
print("DDGAN at T = 2: (TV of the weights, worst mean error):", weights_and_error(gan))
tv, err = weights_and_error(gan)
assert tv <= 0.05 and err <= 0.2

# %% [markdown]
# ## The recovery EBM's chain, against a closed form
#
# If a level's marginal is $\mathcal{N}(m, v)$, the conditional $p(x_{t-1} \mid x_t)$ is Gaussian with precision
# $1/v + \alpha_{t|t-1}^2/\sigma_{t|t-1}^2$; a long chain on the energy $-(x - m)^2/(2v)$ must reach it.

# %%
class Quadratic(torch.nn.Module):
    """An energy whose every level is N(m, v), in the library's scaled form (the energy times s_t^2 = b^2 sigma_t^2)."""

    def __init__(self, process, m, v, b):
        super().__init__()
        self.process, self.m, self.v, self.b = process, m, v, b

    def forward(self, x, c_noise, cond=None):
        s2 = (self.b**2 * self.process.transition_variance(c_noise.double(), c_noise.double() - 1)).to(x.dtype)
        return (-s2[:, None] * (x - self.m) ** 2 / (2 * self.v)).sum(1, keepdim=True)


drl = DiscreteVP("drl", 6)
chain = LangevinChain(600, 0.1)
m, v, n = 0.8, 0.3, 10000
t = torch.full((n,), 3.0, dtype=torch.float64)
x = recover(RecoveryEBM(Quadratic(drl, m, v, chain.b), drl, chain.steps, chain.b), drl,
            torch.full((n, 1), -0.5, dtype=torch.float64), t, chain, generator=torch.Generator().manual_seed(2))
a = float(drl.alpha(t[0]) / drl.alpha(t[0] - 1))
s2 = float(drl.transition_variance(t[0], t[0] - 1))
precision = 1 / v + a**2 / s2
mean, var = (m / v + a * -0.5 / s2) / precision, 1 / precision
print(f"chain mean {float(x.mean()):.4f} (closed form {mean:.4f}), variance {float(x.var()):.4f} ({var:.4f})")
assert abs(float(x.mean()) - mean) < 0.02 * var ** 0.5 + 4 * (var / n) ** 0.5 and abs(float(x.var()) / var - 1) < 0.05

# %% [markdown]
# ## Training the EBM
#
# Six levels of the paper's schedule, chains of 10 Langevin steps; 1000 training steps (about 35 seconds):

# %%
torch.manual_seed(0)
energy = RecoveryEBM(MLP(dim=2, hidden=128, depth=3, out_dim=1), drl, 10, 0.0141)
with tempfile.TemporaryDirectory() as run:
    config = TrainConfig(steps=1000, lr=1e-3, **settings)
    energy = Trainer(energy, RecoveryLoss(10, 0.0141), ArrayDataset(data), run, config).train()
ebm = sample(energy, x_T, "recovery", steps=6, schedule="uniform", generator=sample_generators(1, 4000))
print("recovery EBM at 6 levels: (TV of the weights, worst mean error):", weights_and_error(ebm))
tv, err = weights_and_error(ebm)
assert tv <= 0.05 and err <= 0.2

fig, axes = plt.subplots(1, 4, figsize=(16, 4), sharex=True, sharey=True)
for ax, pts, title in [(axes[0], data[:4000], "data"), (axes[1], ddpm, "exact DDPM, 2 steps"),
                       (axes[2], gan, "DDGAN, 2 steps"), (axes[3], ebm, "recovery EBM, 6 levels")]:
    ax.scatter(*pts.T, s=1), ax.set_title(title), ax.set_xlim(-2, 2), ax.set_ylim(-2, 2)
plt.tight_layout()
plt.show()
