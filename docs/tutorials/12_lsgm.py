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
# # 12. LSGM: a score prior trained end to end with its VAE
#
# Latent diffusion trains its autoencoder first and freezes it. LSGM (Vahdat, Kreis & Kautz 2021) trains the
# encoder $q(z_0 \mid x)$, the decoder $p(x \mid z_0)$ and a score-based prior $p(z_0)$ together on one bound:
#
# $$-\log p(x) \le \mathbb{E}_{q}\left[-\log p(x \mid z_0)\right] - H\left(q(z_0 \mid x)\right) +
# \operatorname{CE}\left(q(z_0 \mid x) \,\|\, p(z_0)\right).$$
#
# The cross entropy to a diffusion prior has no closed form; LSGM writes it through the diffused latents as a
# weighted denoising score-matching integral plus two ends (their Thm. 1):
#
# $$\operatorname{CE} = \mathbb{E}_{t, \epsilon}\left[\frac{w(t)}{2} \left\|\epsilon - \hat\epsilon(z_t, t)\right\|^2
# \right] + \text{(prior and last-step terms)}, \qquad w(t) = \frac{\beta(t)}{\sigma(t)^2},$$
#
# with $t$ drawn by importance from $w$ to tame its variance. Everything is checked against Gaussians, where the
# answer is closed-form.

# %%
import math

import matplotlib.pyplot as plt
import torch

from denoisekit import GaussianMixture
from denoisekit.nets.vae import LinearAutoencoder
from denoisekit.objectives.lsgm import LatentScoreModel, cross_entropy, lsgm_bound
from denoisekit.processes import VPSDE

torch.set_default_dtype(torch.float64)
process = VPSDE()


def gaussian_prior(m, s):
    """The exact denoiser of N(m, diag(s^2)) diffused on the VP SDE: a one-component mixture's."""
    return GaussianMixture([1.0], [m], [s]).denoiser(process)


def mean_se(v):
    return float(v.mean()), float(v.std() / math.sqrt(len(v)))

# %% [markdown]
# ## The cross entropy estimator is exact for the exact score
#
# With $q = \mathcal{N}(\mu, v)$ and the prior's exact score of $\mathcal{N}(m, s^2)$, the estimator's mean is the
# Gaussian cross entropy $\sum_i \frac12\left[\log 2\pi s_i^2 + (v_i + (\mu_i - m_i)^2)/s_i^2\right]$, whether $t$
# is drawn uniformly or by importance; importance sampling buys a far smaller variance:

# %%
m, s, mu, v = [0.5, -0.3], [0.7, 1.3], torch.tensor([0.2, 0.4]), torch.tensor([0.09, 0.5])
g = torch.Generator().manual_seed(0)
z0 = mu + v.sqrt() * torch.randn(40000, 2, generator=g)
exact = sum(0.5 * (math.log(2 * math.pi * si**2) + (vi + (mui - mi) ** 2) / si**2)
            for mi, si, mui, vi in zip(m, s, mu.tolist(), v.tolist()))
estimates = {k: cross_entropy(gaussian_prior(m, s), z0, k, torch.Generator().manual_seed(1)) for k in
             ("importance", "uniform")}
for k, est in estimates.items():
    mean, se = mean_se(est)
    print(f"{k:10s}: {mean:.4f} +- {se:.4f} nats (closed form {exact:.4f}); variance {float(est.var()):.3g}")
    assert abs(mean - exact) < 3 * se + 2e-3
assert estimates["importance"].var() < estimates["uniform"].var()

fig, ax = plt.subplots(figsize=(7, 3.5))
for k, est in estimates.items():
    ax.hist(est.clamp(-20, 40).numpy(), bins=120, histtype="step", density=True, label=f"t drawn {k}")
ax.axvline(exact, color="k", ls="--", label="closed form")
ax.set_xlabel("one-sample estimate of CE (nats; clipped to [-20, 40])"), ax.legend()
plt.show()

# %% [markdown]
# ## The whole bound of a linear-Gaussian VAE
#
# A linear encoder and decoder with a Gaussian likelihood of scale $b$, and a standard normal prior: every term of
# the -ELBO is then closed-form, and `lsgm_bound`'s estimate (in bits per data dimension) must match it.

# %%
torch.manual_seed(0)
vae = LinearAutoencoder(dim=3, latent_dim=2)
with torch.no_grad():
    vae.log_b.fill_(-0.5)
model = LatentScoreModel(vae, gaussian_prior([0.0, 0.0], [1.0, 1.0]), [3], [2])
x = torch.tensor([[0.3, -1.0, 0.5]])
n = 40000
terms = lsgm_bound(model, x.expand(n, 3), torch.Generator().manual_seed(4))
nats = terms["bound"] * math.log(2) * 3
with torch.no_grad():
    mu, logvar = vae.encode(x)
    var = logvar.exp()[0]
    W, b = vae.dec.weight, vae.dec.bias
    r = x[0] - W @ mu[0] - b
    e_sq = float(r @ r + (W**2 @ var).sum())                 # E|x - W z - b|^2 under q
    rec = 0.5 * e_sq / math.exp(-1.0) + 3 * (-0.5 + 0.5 * math.log(2 * math.pi))
    neg_entropy = -float((0.5 * math.log(2 * math.pi * math.e) + 0.5 * logvar[0]).sum())
    ce = float((0.5 * math.log(2 * math.pi) + 0.5 * (var + mu[0] ** 2)).sum())
mean, se = mean_se(nats)
print(f"LSGM bound {mean:.4f} +- {se:.4f} nats; closed form {rec + neg_entropy + ce:.4f} "
      f"(reconstruction {rec:.3f}, -H {neg_entropy:.3f}, CE {ce:.3f})")
assert abs(mean - (rec + neg_entropy + ce)) < 3 * se + 2e-3

# %% [markdown]
# In training (`denoisekit train --objective lsgm --latent AE_RUN`), `LSGMLoss` alternates two phases with their own
# optimizers: the VAE steps on this bound, the prior on its own weighting of the score-matching term over the
# detached latents. The measured comparison against two-stage latent diffusion on MNIST is in the
# {doc}`guide <../guide/python>` and the {doc}`results <../benchmarks>`: the joint bound is about half the two-stage model's in bits per dimension, while its
# samples are worse at equal minutes.
