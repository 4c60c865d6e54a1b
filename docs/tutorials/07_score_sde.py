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
# # 7. Score SDEs, the probability-flow ODE and exact likelihood
#
# Song et al. (2021) take the number of steps to infinity: the forward process becomes an SDE
# $dx = f(t)\,x\,dt + g(t)\,dw$, and Anderson's theorem gives its time reversal and an ODE with the same marginals:
#
# $$dx = \left[f(t) x - g(t)^2 \nabla_x \log p_t(x)\right] dt + g(t)\, d\bar w, \qquad
# \frac{dx}{dt} = f(t) x - \tfrac12 g(t)^2 \nabla_x \log p_t(x).$$
#
# VP is DDPM's limit ($f = -\beta(t)/2$, $g^2 = \beta(t)$), VE is NCSN's ($f = 0$, $g^2 = d\sigma^2/dt$), and
# sub-VP has VP's mean with a smaller variance. Any process with marginals $x_t = \alpha(t) x_0 + \sigma(t)
# \epsilon$ has
#
# $$f = \frac{d \log \alpha}{dt}, \qquad g^2 = \frac{d\sigma^2}{dt} - 2 f \sigma^2,$$
#
# which is how the library serves one reverse SDE and one ODE to every process, DDPM's included.

# %%
import matplotlib.pyplot as plt
import torch

from denoisekit import VESDE, VPSDE, GaussianMixture, NoiseProcess, SubVPSDE, ode_log_likelihood, sample

torch.set_default_dtype(torch.float64)
gmm = GaussianMixture([0.3, 0.7], [[-1.0, 0.0], [1.0, 0.5]], [0.2, 0.3])

# %% [markdown]
# ## Drift and diffusion: closed forms against the general rule
#
# Each SDE class states its closed-form $(f, g^2)$ (eq. 30, 32, 34); `NoiseProcess.sde` derives them from
# $\alpha$ and $\sigma$ by automatic differentiation. They must agree, and for VP they must be the paper's
# $\beta(t) = \beta_{\min} + t(\beta_{\max} - \beta_{\min})$:

# %%
t = torch.linspace(0.05, 1.0, 20)
for process in (VPSDE(), SubVPSDE(), VESDE()):
    f, g2 = process.sde(t)
    f_rule, g2_rule = NoiseProcess.sde(process, t)
    assert torch.allclose(f, f_rule, rtol=1e-6) and torch.allclose(g2, g2_rule, rtol=1e-6), type(process).__name__
vp = VPSDE()
assert torch.allclose(vp.sde(t)[1], 0.1 + t * (20 - 0.1))
print("closed-form f, g^2 = the rule from alpha and sigma, for VP, sub-VP and VE")

# %% [markdown]
# And the forward SDE itself, simulated by Euler-Maruyama from a fixed $x_0$, reaches the closed-form marginal
# $\mathcal{N}(\alpha(t) x_0, \sigma(t)^2)$:

# %%
g = torch.Generator().manual_seed(0)
x0 = torch.tensor([1.0, -2.0])
for process in (vp, VESDE(sigma_max=5.0)):
    x, n, t_end = x0.expand(20000, 2).clone(), 1000, 0.6
    dt = t_end / n
    for i in range(n):
        f, g2 = process.sde(torch.tensor(i * dt))
        x = x + f * x * dt + (g2 * dt).sqrt() * torch.randn(x.shape, generator=g)
    te = torch.tensor(t_end)
    assert (x.mean(0) - process.alpha(te) * x0).abs().max() < 0.03 * max(1.0, float(process.sigma(te)))
    assert abs(float(x.var(0).mean() / process.sigma(te) ** 2) - 1) < 0.05
print("Euler-Maruyama on the forward SDE reaches q(x_t | x_0)")

# %% [markdown]
# ## Sampling by the reverse SDE and the ODE
#
# With the mixture's exact score, Euler-Maruyama on the reverse SDE (`em`), predictor-corrector (`pc`: a
# reverse-diffusion predictor and a Langevin corrector at signal-to-noise ratio 0.16) and the probability-flow ODE
# (`rk45`, dopri5) all draw the data; the check is the left component's share, 0.3.

# %%
model = gmm.denoiser(vp)
x_T = vp.prior_sample((3000, 2), torch.Generator().manual_seed(1))
results = {}
for name, kwargs in [("em", dict(steps=500)), ("pc", dict(steps=250, snr=0.16)), ("rk45", dict(steps=2))]:
    x = sample(model, x_T, name, generator=torch.Generator().manual_seed(2), **kwargs)
    results[name] = x
    share = float((x[:, 0] < 0).double().mean())
    print(f"{name}: left share {share:.3f}")
    assert abs(share - 0.3) < 4 * (0.3 * 0.7 / 3000) ** 0.5 + 0.01, name

# %% [markdown]
# ## Exact likelihood
#
# Along the ODE, $\frac{d}{dt} \log p_t(x_t) = -\nabla \cdot \left(f x - \tfrac12 g^2 \nabla \log p_t\right)$, so
# integrating from the data to the prior and adding the prior's log-density gives $\log p_0(x)$ exactly, up to the
# solver's tolerance. With the exact score the answer is the mixture's own density; on VE:

# %%
ve = VESDE()
x = gmm.sample(12, torch.Generator().manual_seed(3))[0]
ll = ode_log_likelihood(gmm.denoiser(ve), x, probe="exact")
t0 = torch.tensor(ve.t_eps)
reference = gmm.log_density(x, ve.alpha(t0), ve.sigma(t0))
print(f"ODE {ll.mean():.4f}, closed form {reference.mean():.4f} nats")
assert torch.allclose(ll, reference, atol=0.05)

fig, axes = plt.subplots(1, 3, figsize=(14, 4), sharex=True, sharey=True)
for ax, (name, x) in zip(axes, results.items()):
    ax.scatter(*x.T, s=1), ax.set_title(name)
plt.tight_layout()
plt.show()
