"""The command line, one file per verb group: `flags` (what the verbs share), `train`, `sample` (sample and eval),
`ddim` (invert and interpolate), `info` (nll and info), and `main` (the parser and the error boundary)."""
from .main import main

__all__ = ["main"]
