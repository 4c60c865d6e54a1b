"""Text conditioning's data side: captions whose truth is known (MNIST-5k described from labels and measured
attributes), user captions, and a tokenizer trained on them."""
from .captions import ATTRIBUTES, Bins, CaptionedDataset, caption, measure, mnist_captions, parse
from .tokenizer import TextTokenizer

__all__ = ["ATTRIBUTES", "Bins", "CaptionedDataset", "TextTokenizer", "caption", "measure", "mnist_captions", "parse"]
