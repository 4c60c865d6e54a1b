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
# # 13. Text conditioning: captions, a text encoder, cross-attention and guidance
#
# GLIDE (Nichol et al. 2022), latent diffusion and Imagen (Saharia et al. 2022) condition the denoiser on a caption:
# a tokenizer turns it into ids, a transformer encodes them into a sequence $c \in \mathbb{R}^{L \times d}$, and
# the U-Net reads it by cross-attention at its attention levels,
#
# $$\operatorname{Attention}(Q, K, V) = \operatorname{softmax}\left(\frac{Q K^\top}{\sqrt{d}}\right) V, \qquad
# Q = W_Q\, h,\ K = W_K\, c,\ V = W_V\, c,$$
#
# with $h$ the image features, padding masked out, while the pooled caption joins the time embedding. Captions
# are dropped to the empty caption with probability 0.1 in training, so the one network is both $p(x \mid c)$ and
# $p(x)$, and classifier-free guidance (lecture 5) steers it toward the prompt. This lecture uses MNIST-5k with
# captions whose truth is known, because they were written from measurements of the pixels.

# %%
import matplotlib.pyplot as plt
import torch

from denoisekit import Denoiser, DiscreteVP, GaussianMixture, load_dataset, sample
from denoisekit.conditioning import Cond
from denoisekit.guidance import ClassifierFreeGuidance
from denoisekit.nets.text import CrossAttention, TextEncoder
from denoisekit.text import ATTRIBUTES, TextTokenizer, parse
from denoisekit.text.captions import DIGITS
from denoisekit.utils import sample_generators

# %% [markdown]
# ## Captions with a known truth
#
# `load_dataset("mnist-captions")` captions each digit from its label and from its measured stroke thickness
# (twice the ink's area over its perimeter), slant (the second moments' $-\operatorname{cov}(\text{col},
# \text{row}) / \operatorname{var}(\text{row})$) and size, binned at the data's tertiles. Every caption parses back
# to the digit and the attributes measured again from the pixels:

# %%
ds = load_dataset("mnist-captions")
again = ds.bins.attributes(ds.x[:500], ds.y[:500].numpy())
for i in range(500):
    asked = parse(ds.captions[i])
    assert asked["digit"] == int(ds.y[i])
    assert all(asked[a] in (None, int(again[a][i])) for a in ATTRIBUTES)
fig, axes = plt.subplots(1, 6, figsize=(15, 3))
for ax, i in zip(axes, range(6)):
    ax.imshow(ds.x[i, 0], cmap="gray"), ax.set_title(ds.captions[i], fontsize=8), ax.axis("off")
plt.show()

# %% [markdown]
# ## Tokens, the encoder and cross-attention
#
# A byte-pair tokenizer trained on the captions (nothing downloaded), ids padded with 0. Padding must change
# nothing: extra pad tokens leave the encoder's outputs at the real positions as they were, and cross-attention
# ignores whatever sits behind a False mask.

# %%
tok = TextTokenizer.train(ds.captions, vocab_size=256, max_len=16)
ids = tok(["a thick seven slanting right", ""])
print(ids)
assert (ids[1] == 0).all()
torch.manual_seed(0)
enc = TextEncoder(vocab_size=tok.vocab_size, dim=16, layers=2, heads=4, max_len=16).eval()
ctx, mask, pooled = enc(ids)
ctx_short, _, pooled_short = enc(ids[:, :8])
assert torch.allclose(ctx[:, :8], ctx_short, atol=1e-5) and torch.allclose(pooled, pooled_short, atol=1e-5)
attention = CrossAttention(8, 16, num_heads=2)
torch.nn.init.normal_(attention.proj.weight)          # its output starts at zero; make it visible
h = torch.randn(2, 8, 4, 4)
junk = ctx.clone()
junk[~mask] = 100 * torch.randn_like(junk[~mask])
assert torch.allclose(attention(h, ctx, mask), attention(h, junk, mask), atol=1e-5)
print("padding changes nothing in the encoder or the cross-attention")

# %% [markdown]
# ## Guidance through text, exactly
#
# On a Gaussian mixture whose captions name its components, a model that reads the tokens and returns the
# component's exact posterior mean (the empty caption: the whole mixture) is, through CFG, the class-conditional
# model guided by labels: the same draws, bit for bit.

# %%
gm = GaussianMixture([0.5, 0.3, 0.2], [[-1.0, 0.0], [1.0, 0.5], [0.0, -1.2]], [0.3, 0.25, 0.2])
process = DiscreteVP(T=200)
captions = [f"a point of cluster {DIGITS[k]}" for k in range(3)]
tok2 = TextTokenizer.train(captions, 64, 8)
component = {tuple(tok2([c])[0].tolist()): k for k, c in enumerate(captions)}


def reads_text(x_t, t, cond):
    rows = [tuple(r.tolist()) for r in Cond.of(cond).tokens]
    labels = torch.tensor([component.get(r, -1) for r in rows])
    return gm.posterior_mean(x_t, process.alpha(t.double()), process.sigma(t.double()), labels).to(x_t.dtype)


by_text = Denoiser.from_function(reads_text, process, prediction="x0")
by_label = gm.denoiser(process, conditional=True)
labels = torch.arange(300) % 3
x_T = torch.randn(300, 2, generator=torch.Generator().manual_seed(1))
want = sample(ClassifierFreeGuidance(by_label, 2.0), x_T, "ddpm", 20, cond=labels, generator=sample_generators(3, 300))
got = sample(ClassifierFreeGuidance(by_text, 2.0), x_T, "ddpm", 20,
             cond=Cond(tokens=tok2([captions[k] for k in labels])), generator=sample_generators(3, 300))
assert torch.equal(want, got)
plt.figure(figsize=(4, 4))
plt.scatter(*got.T, c=labels, s=4), plt.title('"a point of cluster zero / one / two", w = 2')
plt.show()

# %% [markdown]
# ## At full size
#
# `denoisekit train --data mnist-captions --set text_cond=true` trains the tokenizer, the text encoder and the U-Net
# together; `denoisekit sample RUN --prompt "a thick seven" --guidance 1` draws. The measured prompt fidelity (digit
# and attributes read back by the same measurers), GLIDE's noised-CLIP guidance, Imagen's frozen encoder, dynamic
# thresholding and unCLIP are in the {doc}`guide <../guide/python>`.
