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
# # 9. Few steps: progressive distillation and consistency models
#
# A trained diffusion model's ODE maps noise to data in tens of evaluations; distillation trains a student to take
# far fewer. **Progressive distillation** (Salimans & Ho 2022) halves the steps per stage: the student learns to
# land in one DDIM step where its teacher lands in two, $t \to t' \to t''$, by regressing its $\hat x_0$ on the
# target (their Alg. 2)
#
# $$\tilde x = \frac{z_{t''} - \frac{\sigma_{t''}}{\sigma_t} z_t}{\alpha_{t''} - \frac{\sigma_{t''}}{\sigma_t}
# \alpha_t}.$$
#
# A **consistency model** (Song et al. 2023) learns $f(x_t, t)$ that maps every point of an ODE trajectory to the
# trajectory's start, parameterised so that $f(x, \sigma_{\min}) = x$ exactly:
# $f = c_{\text{skip}}(\sigma)\, x + c_{\text{out}}(\sigma)\, F_\theta$ with
# $c_{\text{skip}} = \frac{\sigma_d^2}{(\sigma - \sigma_{\min})^2 + \sigma_d^2}$,
# $c_{\text{out}} = \frac{\sigma_d (\sigma - \sigma_{\min})}{\sqrt{\sigma^2 + \sigma_d^2}}$. Distillation trains it
# so that adjacent points of the teacher's ODE map to the same output: $\|f_\theta(x_{n+1}, \sigma_{n+1}) -
# f_{\theta^-}(\hat x_n, \sigma_n)\|$, with $\hat x_n$ one teacher step from $x_{n+1}$ and $\theta^-$ an EMA copy.

# %%
import matplotlib.pyplot as plt
import torch

from denoisekit import Denoiser, GaussianMixture, ddim_step, sample
from denoisekit.nets import MLP
from denoisekit.objectives import ConsistencyDistillationLoss
from denoisekit.objectives.distillation import ProgressiveDistillationLoss
from denoisekit.processes import VPSDE

process = VPSDE(t_eps=1e-3)
gmm = GaussianMixture.random(dim=2, k=3, seed=0)
teacher = gmm.denoiser(process)                    # the exact denoiser is the teacher

# %% [markdown]
# ## The progressive-distillation target, checked
#
# One DDIM step from $z_t$ with $\hat x_0 = \tilde x$ must land exactly on the teacher's two-step result:

# %%
g = torch.Generator().manual_seed(0)
z_t = torch.randn(64, 2, generator=g, dtype=torch.float64)
t, t1, t2 = (torch.full((64,), v, dtype=torch.float64) for v in (0.8, 0.6, 0.4))
x_tilde = ProgressiveDistillationLoss(steps=4).with_teacher(teacher).target(z_t, t, t1, t2, None)
two_steps = ddim_step(teacher, ddim_step(teacher, z_t, t, t1)[0], t1, t2)[0]
a, s, a2, s2 = process.alpha(t)[:, None], process.sigma(t)[:, None], process.alpha(t2)[:, None], process.sigma(t2)[:, None]
one_step = a2 * x_tilde + s2 * (z_t - a * x_tilde) / s        # DDIM with x0-hat = x~ and its implied eps
assert torch.allclose(one_step, two_steps, atol=1e-8)
print("one student step with the target = two teacher steps")

# %% [markdown]
# ## Consistency distillation
#
# `consistency=True` turns any denoiser into the consistency function. Its boundary condition holds by
# construction, before any training (in the scaled coordinate $\tilde x = x / \alpha$ of the ODE):

# %%
torch.manual_seed(0)
student = Denoiser(MLP(dim=2), process, "edm", consistency=True)
x = torch.randn(16, 2)
t_min = torch.full((16,), process.t_eps, dtype=torch.float64)
with torch.no_grad():
    assert torch.allclose(student(x, t_min, clip=False).x0, x / process.alpha(t_min)[:, None].float(), atol=1e-6)

# %% [markdown]
# Distilled from the exact teacher for 1500 steps (the teacher's Heun steps between 18 Karras levels; the target
# network an EMA of the student):

# %%
loss = ConsistencyDistillationLoss(levels=18).with_teacher(teacher)
opt = torch.optim.Adam(student.parameters(), lr=1e-3)
data = gmm.sample(8192, torch.Generator().manual_seed(1))[0].float()
g = torch.Generator().manual_seed(2)
for step in range(1500):
    value = loss(student, data[torch.randint(0, 8192, (256,), generator=g)], None, g).mean()
    opt.zero_grad(), value.backward(), opt.step()
    loss.after_step(student, step + 1)

# %% [markdown]
# The student's one-step samples against the exact ODE endpoints of the same noise (dopri5 on the exact
# denoiser), beside the exact model's own one-step DDIM: the student has learned in one evaluation what the
# ODE needs many for.

# %%
x_T = process.prior_sample((2000, 2), torch.Generator().manual_seed(3))
exact_end = sample(teacher, x_T.double(), "rk45", steps=2, rtol=1e-7, atol=1e-7)
spread = float(exact_end.std(0).mean())
with torch.no_grad():
    one = sample(student, x_T, sampler="consistency", steps=1).double()
    two = sample(student, x_T, sampler="consistency", steps=2, generator=torch.Generator().manual_seed(4)).double()
ddim_one = sample(teacher, x_T.double(), "ddim", steps=1)
err_student = float((one - exact_end).norm(dim=1).mean()) / spread
err_ddim = float((ddim_one - exact_end).norm(dim=1).mean()) / spread
print(f"1 step, mean distance to the exact endpoint / data spread: student {err_student:.3f}, exact DDIM {err_ddim:.3f}")
assert err_student < 0.5 * err_ddim

fig, axes = plt.subplots(1, 4, figsize=(16, 4), sharex=True, sharey=True)
for ax, pts, title in [(axes[0], exact_end, "exact ODE endpoints"), (axes[1], ddim_one, "exact model, 1 DDIM step"),
                       (axes[2], one, "consistency student, 1 step"), (axes[3], two, "student, 2 steps")]:
    ax.scatter(*pts.T, s=1), ax.set_title(title)
plt.tight_layout()
plt.show()
