"""A text-conditional run (text_cond: true): the captions' tokenizer trained on the data set's captions, the tokens as
the conditioning, the text encoder's settings for the U-Net, and what a checkpoint records to tokenize prompts."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..text import ATTRIBUTES, Bins, CaptionedDataset, TextTokenizer, parse


@dataclass
class TextSettings:
    """The text section: the tokenizer's vocabulary and caption length, and the text encoder's width and depth."""
    vocab_size: int = 128
    max_len: int = 16
    dim: int = 64
    layers: int = 2
    heads: int = 4
    holdout: tuple[str, ...] = ()  # digit x attribute combinations kept out of training ('a thick three')
    encoder: Optional[str] = None  # a train-clip run or a transformers text model folder: its tokenizer and encoder,
    #                                frozen (the sizes above unused, but max_len for a transformers model)

    def __post_init__(self):
        from ..config import require
        for name in ("vocab_size", "max_len", "dim", "layers", "heads"):
            value = getattr(self, name)
            require(isinstance(value, int) and not isinstance(value, bool) and value >= 1, f"text.{name}",
                    "a positive integer", value)
        require(self.vocab_size >= 8, "text.vocab_size", "at least 8 (two special tokens and the letters)",
                self.vocab_size)
        require(self.dim % self.heads == 0, "text.heads", f"a divisor of text.dim ({self.dim})", self.heads)
        for phrase in self.holdout:
            asked = parse(phrase) if isinstance(phrase, str) else {}
            require(asked.get("digit") is not None and any(asked.get(a) is not None for a in ATTRIBUTES),
                    "text.holdout", "phrases that name a digit and an attribute word ('a thick three')", phrase)


def captioned(ds, data: str):
    """The run's data set with captions: mnist-captions as loaded, an image folder with its captions read."""
    import os
    from pathlib import Path
    path = Path(os.path.expanduser(data))
    if not isinstance(ds, CaptionedDataset) and path.is_dir():
        from ..text.captions import captioned_folder
        return captioned_folder(path, ds)
    return ds


def tokenize_dataset(ds, settings: TextSettings) -> TextTokenizer:
    """Train the tokenizer on the data set's captions and set its tokens (the conditioning); returns the tokenizer."""
    if not isinstance(ds, CaptionedDataset):
        raise ValueError(f"text_cond: the data set {ds.name!r} has no captions; use mnist-captions, an image folder "
                         f"with a NAME.txt caption beside each image, or a captions.jsonl of (file, caption)")
    if settings.holdout:
        ds.keep(~held_out(ds, settings.holdout))
    if settings.encoder is not None:  # a pre-trained encoder's own tokenizer
        tok = pretrained_encoder(settings.encoder, settings.max_len).tokenizer
    else:
        tok = TextTokenizer.train(ds.captions, settings.vocab_size, settings.max_len)
    ds.tokens = tok(ds.captions)
    ds.tokenizer = tok
    return tok


def held_out(ds, holdout) -> torch.Tensor:
    """Which examples show a held-out combination: the phrase's digit with every attribute bin the phrase names."""
    if ds.attributes is None:
        raise ValueError(f"text.holdout: needs captions made from known attributes (mnist-captions); the data set "
                         f"{ds.name!r} has none")
    out = torch.zeros(len(ds), dtype=torch.bool)
    for phrase in holdout:
        asked = parse(phrase)
        hit = ds.y == asked["digit"]
        for a in ATTRIBUTES:
            if asked[a] is not None:
                hit &= torch.as_tensor(ds.attributes[a] == asked[a])
        out |= hit
    return out


@dataclass
class Pretrained:
    """A pre-trained text encoder for text.encoder: its tokenizer, the U-Net's `text` argument that rebuilds it
    (frozen), and its weights."""
    tokenizer: TextTokenizer
    arguments: dict
    weights: dict


_PRETRAINED: dict = {}  # path -> Pretrained, opened once a process (a run asks for it three times)


def pretrained_encoder(path: str, max_len: int) -> Pretrained:
    """text.encoder: a `train-clip` run's text tower, or a local transformers text model folder (CLIP's text model, a
    T5 encoder, ...: config.json with a model_type, and a fast tokenizer; loaded with local_files_only)."""
    import os
    try:
        stamp = os.stat(os.path.expanduser(str(path))).st_mtime_ns  # a folder written again is opened again
    except OSError:
        stamp = None
    key = (str(path), max_len, stamp)
    if key not in _PRETRAINED:
        _PRETRAINED[key] = _open_pretrained(str(path), max_len)
    return _PRETRAINED[key]


def _open_pretrained(path: str, max_len: int) -> Pretrained:
    import json
    from pathlib import Path
    config = Path(path).expanduser() / "config.json"
    try:
        foreign = config.is_file() and "model_type" in json.loads(config.read_text()) and \
            "model" not in json.loads(config.read_text())
    except ValueError:
        foreign = False
    if foreign:
        return _open_transformers(str(Path(path).expanduser()), max_len)
    clip = pretrained_clip(path, "text.encoder", ", nor a transformers model folder (config.json with a model_type)")
    enc = clip.clip.net.text_encoder
    layer = enc.layers.layers[0]
    arguments = {"vocab_size": enc.tok.num_embeddings, "dim": enc.dim, "layers": len(enc.layers.layers),
                 "heads": layer.self_attn.num_heads, "max_len": enc.max_len, "frozen": True}
    return Pretrained(clip.tokenizer, arguments, enc.state_dict())


def pretrained_clip(path: str, key: str, alternative: str = ""):
    """The LoadedCLIP of a train-clip run named by config key `key`, with a one-line error naming the key."""
    from ..models import open_clip
    try:
        return open_clip(path)
    except (ValueError, OSError) as e:
        raise ValueError(f"{key}: {str(e).split(': ', 1)[-1]}{alternative}") from None


def _open_transformers(path: str, max_len: int) -> Pretrained:
    """A transformers folder's fast tokenizer (ids shifted by one: 0 is padding) and text model."""
    try:
        import transformers
    except ImportError:
        raise ValueError("text.encoder: a transformers model folder needs the transformers package (pip install "
                         "transformers)") from None
    try:
        fast = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = transformers.AutoModel.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"text.encoder: {path} does not load as a transformers text model and tokenizer "
                         f"({str(e).splitlines()[0]})") from None
    backend = getattr(fast, "backend_tokenizer", None)
    if backend is None:
        raise ValueError(f"text.encoder: {path}'s tokenizer is not a fast (tokenizers) one")
    from ..nets.text import PretrainedTextEncoder
    config = model.config.to_dict()
    encoder = PretrainedTextEncoder(config, max_len)
    encoder.model.load_state_dict((model.get_encoder() if getattr(model.config, "is_encoder_decoder", False)
                                   else model).state_dict())
    return Pretrained(TextTokenizer(backend, max_len, offset=1), {"hf": config, "max_len": max_len, "frozen": True},
                      encoder.state_dict())


def encoder_arguments(ds, settings: TextSettings) -> Optional[dict]:
    """The U-Net's `text` argument for a tokenized data set (None for a data set without tokens): the text section's
    sizes, or a pre-trained encoder's, frozen."""
    tok = getattr(ds, "tokenizer", None)
    if tok is None:
        return None
    if settings.encoder is not None:
        return pretrained_encoder(settings.encoder, settings.max_len).arguments
    return {"vocab_size": tok.vocab_size, "dim": settings.dim, "layers": settings.layers, "heads": settings.heads,
            "max_len": settings.max_len}


def adopt_encoder(denoiser, settings: TextSettings) -> None:
    """Copy text.encoder's trained weights into the network's (frozen) text encoder."""
    if settings.encoder is not None:
        denoiser.net.text.load_state_dict(pretrained_encoder(settings.encoder, settings.max_len).weights)


def text_record(ds) -> dict:
    """What a checkpoint keeps to tokenize prompts and score them: the tokenizer, and the attribute bins if known."""
    tok = getattr(ds, "tokenizer", None)
    if tok is None:
        return {}
    bins: Optional[Bins] = getattr(ds, "bins", None)
    return {"text": {"tokenizer": tok.to_dict(), "bins": bins.to_dict() if bins is not None else None}}


def settings_of(section) -> TextSettings:
    """The run config's `text:` section as checked TextSettings."""
    from .config import build_section
    return build_section("text", TextSettings, section)

