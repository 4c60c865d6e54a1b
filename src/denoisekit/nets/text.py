"""Text conditioning's network side: a small transformer text encoder (token sequence for cross-attention and a pooled
vector, as GLIDE's, Nichol et al. 2022, sec. 2.3) and cross-attention from image features to the tokens (latent
diffusion, Rombach et al. 2022, eq. 3), with a learned null key so an empty caption attends to something."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import require


def _masks(tokens: torch.Tensor):
    """(true at real tokens, the positions attended to): an empty caption attends to its first (padding) position
    rather than to nothing, which is NaN; its outputs are zeroed by `_outputs`."""
    mask = tokens != 0
    attend = mask.clone()
    attend[:, 0] = True
    return mask, attend


def _outputs(h: torch.Tensor, mask: torch.Tensor):
    """(the sequence zeroed at padding, the mask, its masked mean: 0 for the empty caption)."""
    h = h * mask[..., None]
    return h, mask, h.sum(1) / mask.sum(1, keepdim=True).clamp(min=1)


class TextEncoder(nn.Module):
    """tokens (B, L) -> (context (B, L, dim), mask (B, L) true at real tokens, pooled (B, dim)): token and position
    embeddings, pre-norm transformer layers over the real tokens, the masked mean as the pooled vector (0 for the
    empty caption, whose outputs are zeroed)."""

    def __init__(self, vocab_size: int, dim: int = 64, layers: int = 2, heads: int = 4, max_len: int = 16):
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("dim", dim), ("layers", layers), ("heads", heads),
                            ("max_len", max_len)):
            require(isinstance(value, int) and value >= 1, f"text.{name}", "a positive integer", value)
        require(dim % heads == 0, "text.heads", f"a divisor of text.dim ({dim})", heads)
        self.max_len = max_len
        self.tok = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.pos = nn.Parameter(torch.randn(max_len, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    @property
    def dim(self) -> int:
        return self.tok.embedding_dim

    def forward(self, tokens: torch.Tensor):
        if tokens.ndim != 2 or tokens.shape[1] > self.max_len:
            raise ValueError(f"tokens: expected (batch, <= {self.max_len}) token ids, got {tuple(tokens.shape)}")
        mask, attend = _masks(tokens)
        h = self.tok(tokens) + self.pos[: tokens.shape[1]]
        return _outputs(self.norm(self.layers(h, src_key_padding_mask=~attend)), mask)


class PretrainedTextEncoder(nn.Module):
    """A transformers text model (CLIP's text tower, T5's encoder, ...) built from its config (the weights come from the
    checkpoint, or from its folder when a run starts): tokens (ids + 1; 0 is padding) -> (its last hidden states,
    zeroed at padding; the mask; their masked mean), as TextEncoder gives them."""

    def __init__(self, hf: dict, max_len: int):
        super().__init__()
        try:
            import transformers
        except ImportError:
            raise ValueError("text.encoder: a transformers model needs the transformers package (pip install "
                             "transformers)") from None
        hf = dict(hf)
        config = transformers.AutoConfig.for_model(hf.pop("model_type"), **hf)
        self.model = transformers.AutoModel.from_config(config)
        if hasattr(self.model, "get_encoder") and getattr(config, "is_encoder_decoder", False):
            self.model = self.model.get_encoder()  # T5: the encoder half
        self.max_len = max_len
        self.dim = int(getattr(config, "hidden_size", None) or getattr(config, "d_model"))

    def forward(self, tokens: torch.Tensor):
        if tokens.ndim != 2 or tokens.shape[1] > self.max_len:
            raise ValueError(f"tokens: expected (batch, <= {self.max_len}) token ids, got {tuple(tokens.shape)}")
        mask, attend = _masks(tokens)
        out = self.model(input_ids=(tokens - 1).clamp(min=0), attention_mask=attend.long())
        return _outputs(out.last_hidden_state, mask)


class CrossAttention(nn.Module):
    """x + proj(softmax(q k^T / sqrt(d)) v): queries from the pixels, keys and values from the context tokens (padding
    masked) and a learned null token; the output projection starts at zero."""

    def __init__(self, ch: int, context_dim: int, num_heads: int = 4):
        super().__init__()
        if ch % num_heads:
            raise ValueError(f"num_heads: {num_heads} does not divide the {ch} channels of an attention level")
        from .unet import _groups, _zero
        self.heads = num_heads
        self.norm = nn.GroupNorm(_groups(ch), ch)
        self.q = nn.Conv2d(ch, ch, 1)
        self.kv = nn.Linear(context_dim, 2 * ch)
        self.null_kv = nn.Parameter(torch.zeros(1, 1, 2 * ch))
        self.proj = _zero(nn.Conv2d(ch, ch, 1))

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = x.shape
        q = self.q(self.norm(x)).reshape(b, self.heads, c // self.heads, hh * ww).transpose(-1, -2)
        kv = torch.cat([self.null_kv.expand(b, 1, -1).to(context.dtype), self.kv(context)], dim=1)
        k, v = kv.reshape(b, -1, 2, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        keep = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)[:, None, None, :]  # (b, 1, 1, 1 + L)
        out = F.scaled_dot_product_attention(q.contiguous(), k.contiguous(), v.contiguous(), attn_mask=keep)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, hh, ww))
