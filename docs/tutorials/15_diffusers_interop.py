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
# # 15. diffusers models in, and ours out
#
# A diffusers pipeline is a U-Net plus a scheduler config; the config names a discrete VP process (its betas),
# what the network predicts and whether $x_0$ is clipped. `load_model` reads a local `DDPMPipeline`,
# `DDIMPipeline` or `UNet2DModel` folder into the library's pieces: the config becomes `DiscreteVP` with the
# betas computed as diffusers computes them, the U-Net a network behind a thin wrapper. Then every sampler, schedule
# and guidance wrapper of the library runs on it, and `denoisekit export RUN --to diffusers OUT` writes our models
# the other way. Nothing is downloaded: the lecture builds a small random U-Net and saves it locally.
#
# The check is the one that matters for interoperability: the same model, the same starting noise, and our DDIM
# (eq. 12 of lecture 4, `leading` spacing as diffusers spaces its steps) against diffusers' own `DDIMPipeline`.

# %%
import tempfile
from pathlib import Path

import diffusers
import matplotlib.pyplot as plt
import numpy as np
import torch

from denoisekit import load_model, sample
from denoisekit.interop.diffusers import diffusers_betas

diffusers.utils.logging.set_verbosity_error()       # no advice about optional packages in the lecture's output
diffusers.utils.logging.disable_progress_bar()
torch.manual_seed(0)
unet = diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
                             block_out_channels=(16, 32), down_block_types=("DownBlock2D", "DownBlock2D"),
                             up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=8)
folder = Path(tempfile.mkdtemp()) / "pipeline"
diffusers.DDIMPipeline(unet, diffusers.DDIMScheduler(clip_sample=False, set_alpha_to_one=True,
                                                               timestep_spacing="leading")) \
    .save_pretrained(folder)
model = load_model(folder)
print(f"opened: shape {model.shape}, prediction {model.denoiser.prediction!r}, "
      f"process {type(model.denoiser.process).__name__} with T = {model.denoiser.process.T}")

# %% [markdown]
# ## The process: alpha-bar as diffusers computes it
#
# For each beta schedule diffusers knows, the cumulative product of our process equals the scheduler's own
# `alphas_cumprod`:

# %%
for config in ({"beta_schedule": "linear"}, {"beta_schedule": "scaled_linear", "beta_start": 0.00085,
                                                "beta_end": 0.012}, {"beta_schedule": "squaredcos_cap_v2"}):
    scheduler = diffusers.DDPMScheduler(**config)
    ours = torch.cumprod(1 - diffusers_betas(dict(scheduler.config)), 0)
    assert torch.allclose(ours.double(), scheduler.alphas_cumprod.double(), rtol=1e-5), config
print("alpha-bar = diffusers' alphas_cumprod for linear, scaled_linear and squaredcos_cap_v2")

# %% [markdown]
# ## Sampling: ours against the pipeline
#
# The pipeline draws $x_T$ from its generator; we draw the same $x_T$ from a generator with the same seed, run our
# `ddim` for the same 10 steps, and map both to $[0, 1]$ as the pipeline does:

# %%
pipe = diffusers.DDIMPipeline.from_pretrained(folder)
pipe.set_progress_bar_config(disable=True)
theirs = pipe(batch_size=4, generator=torch.Generator().manual_seed(3), num_inference_steps=10, eta=0.0,
              output_type="np").images
theirs = torch.from_numpy(np.asarray(theirs)).permute(0, 3, 1, 2)
x_T = torch.randn((4, *model.shape), generator=torch.Generator().manual_seed(3))
with torch.no_grad():
    ours = (sample(model.denoiser, x_T, "ddim", 10, "leading") / 2 + 0.5).clamp(0, 1)
gap = float((ours - theirs).abs().max())
print(f"largest pixel difference, ours vs DDIMPipeline: {gap:.1e}")
assert gap < 1e-5

# %% [markdown]
# And since the model is now ours, any of our samplers runs on it, here DPM-Solver++(2M) at 10 evaluations (an
# untrained network draws noise-like pictures; the point is the plumbing):

# %%
with torch.no_grad():
    other = sample(model.denoiser, x_T, "dpmpp_2m", 10)
fig, axes = plt.subplots(2, 4, figsize=(8, 4))
for i in range(4):
    axes[0, i].imshow(theirs[i, 0], cmap="gray"), axes[0, i].axis("off")
    axes[1, i].imshow(ours[i, 0], cmap="gray"), axes[1, i].axis("off")
axes[0, 0].set_title("DDIMPipeline", loc="left"), axes[1, 0].set_title("denoisekit ddim", loc="left")
plt.tight_layout()
plt.show()
