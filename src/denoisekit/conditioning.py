"""One conditioning type for every model: named slots that a network reads and guidance drops.

`Cond` carries a class label (GLIDE / ADM class embedding; -1 is 'no label'), an image concatenated to the input
(cascaded super-resolution's low-resolution image), a context sequence with its padding mask (text tokens for
cross-attention), a pooled vector (a CLIP embedding) and an augmentation level (EDM's `augment_labels`, a cascade's
noise-conditioning level), a latent z (a denoising diffusion GAN's generator input, Xiao et al. 2022), a coupling's
noise (reflow's pairs, Liu et al. 2023; read by the loss, never by a network) and a caption's tokens (encoded by the
network's own text encoder). Every slot is per example: first axis
the batch. A plain label tensor is accepted wherever
a `Cond` is (`Cond.of`), so `sample(model, x, cond=labels)` reads as before.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Optional, Sequence

import torch

from .utils import Generator, rand

NULL_LABEL = -1  # 'no label': the network's extra label embedding (index num_classes), trained with label dropout

# The slots classifier-free guidance and label dropout empty; the rest (a concatenated image, an augmentation level)
# describe the input rather than what is asked of it and are kept (Ho & Salimans 2022; Saharia et al. 2022).
DROPPABLE = ("label", "context", "pooled", "tokens")


@dataclass(frozen=True)
class Cond:
    """Per-example conditioning in named slots; any slot may be None."""
    label: Optional[torch.Tensor] = None         # (B,) long; NULL_LABEL = no label
    concat: Optional[torch.Tensor] = None        # (B, C, H, W): concatenated to the network's input
    context: Optional[torch.Tensor] = None       # (B, L, D): a sequence for cross-attention
    context_mask: Optional[torch.Tensor] = None  # (B, L) bool: True where the context holds a real token
    pooled: Optional[torch.Tensor] = None        # (B, D): a pooled vector added to the embedding
    aug: Optional[torch.Tensor] = None           # (B,) or (B, K): an augmentation / noise-conditioning level
    latent: Optional[torch.Tensor] = None        # (B, Z): a generator's latent z, mapped into the embedding
    noise: Optional[torch.Tensor] = None         # (B, *data): a coupling's noise z paired with x (reflow): the loss's
    tokens: Optional[torch.Tensor] = None        # (B, L) long: a caption's token ids (0: padding), which the network
    #                                              encodes itself (a text encoder trained with it, or frozen)

    @classmethod
    def of(cls, cond: Any) -> Optional["Cond"]:
        """A Cond from None, a Cond, a label tensor, or a mapping of slot names (one-line error otherwise)."""
        if cond is None or isinstance(cond, Cond):
            return cond
        if isinstance(cond, torch.Tensor):
            return cls(label=cond)
        if isinstance(cond, dict):
            unknown = set(cond) - set(SLOTS)
            if unknown:
                raise ValueError(f"cond: unknown slots {sorted(unknown)}; a Cond has {', '.join(SLOTS)}")
            return cls(**cond)
        raise ValueError(f"cond: expected None, a label tensor, a Cond or a mapping of its slots, got "
                         f"{type(cond).__name__}")

    def items(self):
        """(name, tensor) for the slots that are set."""
        return [(f.name, getattr(self, f.name)) for f in fields(self) if getattr(self, f.name) is not None]

    def check_reads(self, slots: tuple, who: str) -> "Cond":
        """This Cond, after a one-line error if it sets a slot that `who` does not read (never dropped silently)."""
        unread = [k for k, _ in self.items() if k not in slots]
        if unread:
            raise ValueError(f"cond: {who} reads {', '.join(slots) or 'no conditioning'}; it was given "
                             f"{', '.join(unread)}")
        return self

    def map(self, fn) -> "Cond":
        """fn applied to every slot that is set."""
        return replace(self, **{k: fn(v) for k, v in self.items()})

    def __len__(self) -> int:
        for _, v in self.items():
            return v.shape[0]
        return 0

    def null(self) -> "Cond":
        """The unconditional request: no label, an empty context (mask all False), a zero pooled vector, the empty
        caption (padding tokens); the concatenated image, the augmentation level and a generator's latent are kept."""
        out = {}
        if self.label is not None:
            out["label"] = torch.full_like(self.label, NULL_LABEL)
        if self.context is not None:
            out["context"] = torch.zeros_like(self.context)
            out["context_mask"] = torch.zeros(self.context.shape[:2], dtype=torch.bool, device=self.context.device)
        if self.pooled is not None:
            out["pooled"] = torch.zeros_like(self.pooled)
        if self.tokens is not None:  # the empty caption: padding only
            out["tokens"] = torch.zeros_like(self.tokens)
        return replace(self, **out)

    def where(self, keep: torch.Tensor, other: "Cond") -> "Cond":
        """Per example: this Cond where `keep` (B,) is true, `other` elsewhere (slot by slot)."""
        def pick(name, v):
            u = getattr(other, name)
            if u is None:
                return v
            return torch.where(keep.reshape(-1, *([1] * (v.ndim - 1))).to(v.device), v, u)
        return replace(self, **{k: pick(k, v) for k, v in self.items()})

    def drop(self, p: float, generator: Generator = None) -> "Cond":
        """Each example's droppable slots replaced by the null ones with probability p (label dropout for
        classifier-free guidance, Ho & Salimans 2022, Alg. 1): one uniform draw per example from its generator."""
        if p <= 0:
            return self
        b = len(self)
        device = next(v for _, v in self.items()).device if b else None
        dropped = rand((b,), generator, device=device) < p
        return self.where(~dropped, self.null())

    def repeat(self, k: int) -> "Cond":
        """Every slot repeated k times along the batch: copy j of example i at j * batch + i (as the exact trace
        repeats x)."""
        if k == 1:
            return self
        return self.map(lambda v: v.repeat(k, *([1] * (v.ndim - 1))))

    def index(self, i) -> "Cond":
        """The examples i (an index, a slice, a boolean mask or an index tensor) of every slot."""
        return self.map(lambda v: v[i])

    def to(self, device) -> "Cond":
        return self.map(lambda v: v.to(device))

    @staticmethod
    def cat(conds: Sequence["Cond"]) -> "Cond":
        """Batches joined along the first axis, slot by slot (the slots set must agree)."""
        names = [tuple(k for k, _ in c.items()) for c in conds]
        if any(n != names[0] for n in names):
            raise ValueError(f"cond: cannot join batches with different slots set ({names})")
        return Cond(**{k: torch.cat([getattr(c, k) for c in conds]) for k in names[0]})


SLOTS = tuple(f.name for f in fields(Cond))


def with_latent(cond: Any, z: torch.Tensor) -> Cond:
    """`cond` (None, labels or a Cond) with its latent slot set to z: a DDGAN generator's input."""
    c = Cond.of(cond)
    return Cond(latent=z) if c is None else replace(c, latent=z)


def guidable(cond: Any, who: str) -> Cond:
    """A Cond with something guidance can drop (labels, a caption, a context), with a one-line error otherwise."""
    c = Cond.of(cond)
    if c is None or not any(k in DROPPABLE for k, _ in c.items()):
        raise ValueError(f"{who}: needs a condition to guide toward (class labels or a caption's tokens); pass "
                         f"cond=labels (a LongTensor, one per sample) or a Cond")
    return c


def labels_of(cond: Any, who: str) -> torch.Tensor:
    """The class labels of a conditioning, with a one-line error naming `who` needs them."""
    c = Cond.of(cond)
    if c is None or c.label is None:
        raise ValueError(f"{who}: needs class labels; pass cond=labels (a LongTensor, one per sample) or a Cond")
    return c.label
