"""A tokenizer trained locally on the captions (byte-pair encoding, Sennrich et al. 2016, with the `tokenizers`
library; nothing downloaded), kept as its JSON text inside a run's config so a checkpoint carries it."""
from __future__ import annotations

from typing import Sequence

import torch

PAD, UNK = "[PAD]", "[UNK]"  # ids 0 and 1: padding (the empty caption is all padding) and unknown pieces


def _tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise ValueError("text: captions need the tokenizers package (pip install 'denoisekit[text]', or pip "
                         "install tokenizers)") from None
    return tokenizers


class TextTokenizer:
    """Captions to (B, max_len) token ids, padded with 0 and truncated at max_len; `offset` shifts a foreign
    tokenizer's ids (a transformers model's, whose padding id is its own) so that 0 still means padding."""

    def __init__(self, tokenizer, max_len: int, offset: int = 0):
        self.tok, self.max_len, self.offset = tokenizer, max_len, offset
        self.tok.no_padding()  # padding and truncation are ours
        self.tok.no_truncation()

    @classmethod
    def train(cls, captions: Sequence[str], vocab_size: int = 256, max_len: int = 16) -> "TextTokenizer":
        tk = _tokenizers()
        tok = tk.Tokenizer(tk.models.BPE(unk_token=UNK))
        tok.normalizer = tk.normalizers.Sequence([tk.normalizers.NFKC(), tk.normalizers.Lowercase()])
        tok.pre_tokenizer = tk.pre_tokenizers.Whitespace()
        tok.train_from_iterator(list(captions), tk.trainers.BpeTrainer(vocab_size=vocab_size,
                                                                      special_tokens=[PAD, UNK], show_progress=False))
        return cls(tok, max_len)

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()

    def __call__(self, captions: Sequence[str]) -> torch.Tensor:
        ids = torch.zeros(len(captions), self.max_len, dtype=torch.long)
        for i, enc in enumerate(self.tok.encode_batch(list(captions))):
            row = enc.ids[: self.max_len]
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long) + self.offset
        return ids

    def to_dict(self) -> dict:
        return {"json": self.tok.to_str(), "max_len": self.max_len, "offset": self.offset}

    @classmethod
    def from_dict(cls, d: dict) -> "TextTokenizer":
        tk = _tokenizers()
        try:
            tok = tk.Tokenizer.from_str(d["json"])
        except Exception as e:  # the library's own parse error
            raise ValueError(f"text: the checkpoint's tokenizer does not load ({str(e).splitlines()[0]})") from None
        return cls(tok, int(d["max_len"]), int(d.get("offset", 0)))
