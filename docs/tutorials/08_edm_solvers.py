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
# # 8. EDM and the fast ODE solvers
#
# Karras et al. (2022) write every diffusion model as $x = y + \sigma n$ in a scaled coordinate and its sampler as
# the ODE $dx/d\sigma = (x - D(x; \sigma))/\sigma$. Their preconditioning makes the network's input and its
# training target unit-variance:
#
# $$D(x; \sigma) = c_{\text{skip}}(\sigma)\, x + c_{\text{out}}(\sigma)\, F_\theta\left(c_{\text{in}}(\sigma)\, x;
# \tfrac14 \ln \sigma\right),$$
#
# $$c_{\text{skip}} = \frac{\sigma_d^2}{\sigma^2 + \sigma_d^2}, \qquad c_{\text{out}} =
# \frac{\sigma \sigma_d}{\sqrt{\sigma^2 + \sigma_d^2}}, \qquad c_{\text{in}} = \frac{1}{\sqrt{\sigma^2 + \sigma_d^2}}.$$
#
# The ODE is then solved by high-order methods: Heun (EDM), DPM-Solver++ (Lu et al. 2022), UniPC (Zhao et al. 2023),
# DEIS and iPNDM (Zhang & Chen 2023), against which the lecture measures error per network evaluation on a mixture
# whose exact ODE solution is known.

# %%
import matplotlib.pyplot as plt
import torch

from denoisekit import VESDE, Denoiser, DiscreteVP, GaussianMixture, sample
from denoisekit.prediction import edm_coefficients

# %% [markdown]
# ## The preconditioning, by Monte Carlo
#
# For data of standard deviation $\sigma_d = 0.5$ and any $\sigma$, $c_{\text{in}} x$ and the effective target
# $F^* = (y - c_{\text{skip}} x)/c_{\text{out}}$ should both have unit variance (Karras et al., App. B.6):

# %%
g = torch.Generator().manual_seed(0)
y = 0.5 * torch.randn(200000, generator=g, dtype=torch.float64)
for sigma in (0.02, 0.5, 5.0, 80.0):
    c_skip, c_out, c_in, _ = edm_coefficients(torch.tensor(sigma, dtype=torch.float64))
    x = y + sigma * torch.randn(200000, generator=g, dtype=torch.float64)
    assert abs(float((c_in * x).std()) - 1) < 0.01 and abs(float(((y - c_skip * x) / c_out).std()) - 1) < 0.01

# the Denoiser applies exactly this form around any network F
F = lambda x_in, c_noise: torch.sin(3 * x_in) + c_noise[:, None]    # noqa: E731 (a stand-in network)
ve = VESDE()
model = Denoiser.from_function(F, ve, prediction="edm")
x, t = torch.randn(5, 2, dtype=torch.float64), torch.full((5,), 0.6, dtype=torch.float64)
sigma = ve.sigma(t)[:, None]
c_skip, c_out, c_in, c_noise = edm_coefficients(sigma)
assert torch.allclose(model(x, t).x0, c_skip * x + c_out * F(c_in * x, c_noise[:, 0]), atol=1e-10)
print("c_in x and the target F* have unit variance; the Denoiser computes D = c_skip x + c_out F(c_in x)")

# %% [markdown]
# ## Error against network evaluations
#
# A random 16-dimensional mixture of 8 components under DDPM's process, its exact denoiser, and the ODE solved by
# dopri5 at $10^{-8}$ as the reference endpoint for 512 fixed $x_T$. Each solver runs with its default schedule;
# `stats` counts the evaluations it used.

# %%
torch.set_default_dtype(torch.float64)
process = DiscreteVP("linear", T=1000)
gmm = GaussianMixture.random(dim=16, k=8, seed=0)
exact = gmm.denoiser(process)
x_T = process.prior_sample((512, 16), torch.Generator().manual_seed(1))
reference = sample(exact, x_T, "rk45", steps=2, rtol=1e-8, atol=1e-8)
curves = {}
for sampler in ("euler", "heun", "dpmpp_2m", "dpmpp_3m", "unipc", "deis", "ipndm"):
    curves[sampler] = []
    for steps in (5, 10, 20, 40):
        stats = {}
        x = sample(exact, x_T, sampler, steps=steps, stats=stats)
        curves[sampler].append((stats["nfe"], float((x - reference).norm(dim=1).mean() / gmm.dim ** 0.5)))
for name, pts in curves.items():
    print(f"{name:9s}", "  ".join(f"NFE {n:3d}: {e:.2e}" for n, e in pts))

# %% [markdown]
# The first-order Euler method needs many evaluations; the multistep solvers of order two and three reach the same
# error with a few. The assertions hold the ranking the papers report:

# %%
at = {name: dict(pts) for name, pts in curves.items()}
for name in ("dpmpp_2m", "dpmpp_3m", "unipc", "deis", "ipndm"):
    assert at[name][20] < at["euler"][20] / 4, name                      # higher order beats Euler by far
    assert at[name][40] < at[name][20] < at[name][10] < at[name][5], name   # and converges
    assert at[name][40] < 5e-3, name

plt.figure(figsize=(7, 4.5))
for name, pts in curves.items():
    plt.loglog(*zip(*pts), "o-", label=name)
plt.xlabel("network evaluations"), plt.ylabel("RMS error per dimension vs the exact ODE endpoint")
plt.legend(), plt.grid(True, which="both", alpha=0.3)
plt.show()
