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
# # 11. Latent diffusion and cascaded super-resolution
#
# Two ways to spend a diffusion model's capacity where it matters. **Latent diffusion** (Rombach et al. 2022) first
# trains an autoencoder, $z = \mathcal{E}(x)$, $x \approx \mathcal{D}(z)$, with a light KL regulariser toward
# $\mathcal{N}(0, I)$, then runs diffusion on the latents, normalised by their measured scale. The first stage's loss
# per element is a negative ELBO with a learned scale $b$ (Laplace for $\ell_1$, Gaussian for $\ell_2$):
#
# $$\mathcal{L} = -\log p(x \mid z) + \beta_{KL}\, D_{KL}\left(\mathcal{N}(\mu, \operatorname{diag} v) \,\|\,
# \mathcal{N}(0, I)\right).$$
#
# A **cascade** (Ho et al. 2021) generates at low resolution and upsamples with a second diffusion model
# conditioned on the low-resolution image, made robust by noise-conditioning augmentation: the conditioning image
# $c$ is replaced in training by $\sqrt{1 - u^2}\, c + u\, \epsilon$ with the level $u$ given to the network.

# %%
import math

import matplotlib.pyplot as plt
import torch

from denoisekit import DiscreteVP, GaussianMixture, load_dataset
from denoisekit.cascade import augment
from denoisekit.data import resize_images
from denoisekit.nets.vae import AutoencoderKL, LinearAutoencoder
from denoisekit.objectives.autoencoder import AutoencoderLoss, diagonal_kl, reconstruction_nll
from denoisekit.samplers import generate

# %% [markdown]
# ## The first stage's terms against `torch.distributions`

# %%
D = torch.distributions
g = torch.Generator().manual_seed(0)
mean, logvar = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)
q, p = D.Normal(mean, (0.5 * logvar).exp()), D.Normal(torch.zeros_like(mean), torch.ones_like(mean))
assert torch.allclose(diagonal_kl(mean, logvar), D.kl_divergence(q, p), rtol=1e-12)
x, x_hat = torch.randn(4, 6, generator=g, dtype=torch.float64), torch.randn(4, 6, generator=g, dtype=torch.float64)
log_b = torch.tensor(-0.7, dtype=torch.float64)
assert torch.allclose(reconstruction_nll(x, x_hat, log_b, "l1"), -D.Laplace(x_hat, log_b.exp()).log_prob(x))
assert torch.allclose(reconstruction_nll(x, x_hat, log_b, "l2"), -D.Normal(x_hat, log_b.exp()).log_prob(x))
print("KL and reconstruction NLL = torch.distributions")

# %% [markdown]
# ## Latent diffusion with an exact answer
#
# Let the data be a linear image $x = A z + c$ (8-D) of a 2-D Gaussian mixture $z$. A linear first stage whose
# encoder is $A$'s pseudo-inverse and whose decoder is $A$, normalised on the data, and the mixture's exact
# denoiser in the normalised latents: sampling latents and decoding them must give the data's component weights.

# %%
g = torch.Generator().manual_seed(0)
mix = GaussianMixture([0.5, 0.3, 0.2], [[-1.5, 0.5], [1.0, 1.5], [0.5, -1.5]], [[0.2, 0.3], [0.25, 0.2], [0.3, 0.2]])
A, c = torch.randn(8, 2, generator=g, dtype=torch.float64), torch.randn(8, generator=g, dtype=torch.float64)
z, _ = mix.sample(20000, generator=g)
data = (z @ A.T + c).float()
ae = LinearAutoencoder(dim=8, latent_dim=2)
with torch.no_grad():
    pinv = torch.linalg.pinv(A)
    ae.enc.weight.zero_(), ae.enc.bias.zero_()
    ae.enc.bias[2:] = -20.0                                  # log-variance: a near-deterministic code
    ae.enc.weight[:2], ae.enc.bias[:2] = pinv.float(), -(pinv @ c).float()
    ae.dec.weight.copy_(A.float()), ae.dec.bias.copy_(c.float())
    ae.set_latent_norm(ae.encode(data)[0], per_channel=True)  # shift and scale to mean 0, std 1 per channel
shift, scale = ae.latent_shift.double(), ae.latent_scale.double()
latent_mixture = GaussianMixture(mix.w, (mix.mu - shift) * scale, mix.tau * scale)
process = DiscreteVP("linear", 1000)
latents = generate(latent_mixture.denoiser(process), 4000, (2,), seed=1, steps=50, sampler="ddim")
with torch.no_grad():
    samples = ae.from_latent(latents.float(), None).double()
centres = mix.mu @ A.T + c
k = torch.cdist(samples, centres).argmin(1)
weights = torch.bincount(k, minlength=3).double() / len(k)
print(f"decoded samples' component weights {weights.tolist()} (data {mix.w.tolist()})")
assert 0.5 * float((weights - mix.w).abs().sum()) <= 0.03

# %% [markdown]
# ## A small autoencoder on digits
#
# The library's `AutoencoderKL` on scikit-learn's 8x8 digits (1,797 images), 4x4 latents of 2 channels, 400
# steps of the $\ell_1$ loss with $\beta_{KL} = 10^{-6}$:

# %%
digits = load_dataset("digits").x
torch.manual_seed(0)
ae = AutoencoderKL(in_channels=1, latent_channels=2, channels=16, channel_mult=(1, 2))
loss_fn, opt = AutoencoderLoss("l1", kl_weight=1e-6), torch.optim.Adam(ae.parameters(), lr=2e-3)
g = torch.Generator().manual_seed(1)
with torch.no_grad():
    before = float((ae.decode(ae.encode(digits[:256])[0], (8, 8)) - digits[:256]).abs().mean())
for step in range(400):
    batch = digits[torch.randint(0, len(digits), (64,), generator=g)]
    loss = loss_fn(ae, batch, None, g).mean()
    opt.zero_grad(), loss.backward(), opt.step()
with torch.no_grad():
    code = ae.encode(digits[:256])[0]
    recon = ae.decode(code, (8, 8))
after = float((recon - digits[:256]).abs().mean())
print(f"latent shape {tuple(code.shape[1:])}; mean |x - x^|: untrained {before:.3f}, trained {after:.3f}")
assert after < 0.5 * before

# %% [markdown]
# ## The cascade's augmentation
#
# $\sqrt{1 - u^2}\, c + u \epsilon$ keeps a unit-variance input at unit variance while it shrinks the signal: by
# Monte Carlo,

# %%
n = 200000
g = torch.Generator().manual_seed(2)
for u in (0.0, 0.3, 0.8):
    fixed = augment(torch.full((n, 1), 0.8), torch.full((n,), u), torch.randn(n, 1, generator=g))
    unit = augment(torch.randn(n, 1, generator=g), torch.full((n,), u), torch.randn(n, 1, generator=g))
    assert abs(float(fixed.mean()) - math.sqrt(1 - u**2) * 0.8) < 4 * u / n**0.5 + 1e-6
    assert abs(float(fixed.std()) - u) < 0.01 and abs(float(unit.var()) - 1) < 0.015
print("augmentation: mean sqrt(1 - u^2) c, spread u, unit variance kept")

low = resize_images(digits[:8], 4)             # what a 4x4 base model would train on
fig, axes = plt.subplots(3, 8, figsize=(12, 4.8))
for i in range(8):
    for row, (img, name) in enumerate([(digits[i], "data"), (recon[i], "reconstruction"),
                                       (augment(resize_images(low[i:i + 1], 8), torch.tensor([0.3]),
                                                torch.randn(1, 1, 8, 8, generator=g))[0], "low-res + aug 0.3")]):
        axes[row, i].imshow(img[0], cmap="gray", vmin=-1, vmax=1), axes[row, i].axis("off")
        if i == 0:
            axes[row, i].set_title(name, fontsize=9, loc="left")
plt.tight_layout()
plt.show()
