"""Prompt fidelity: does a sample show what its caption asked for? The digit by a reference classifier's prediction,
each attribute the caption names by the same measurers and bins that wrote the captions."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from .captions import ATTRIBUTES, DIGITS, WORDS, Bins, parse


def prompt_fidelity(samples: torch.Tensor, prompts: Sequence[str], bins: Bins,
                    predicted_digits: Optional[torch.Tensor] = None) -> dict:
    """{'digit': accuracy of the predicted digits against the prompts' digits, attribute: accuracy of the measured bin
    against the asked one (over the prompts that name it), and n_<name>: how many were scored}."""
    if len(samples) != len(prompts):
        raise ValueError(f"prompt_fidelity: {len(samples)} samples for {len(prompts)} prompts")
    asked = [parse(p) for p in prompts]
    digits = np.array([a["digit"] if a["digit"] is not None else -1 for a in asked])
    out: dict = {}
    if predicted_digits is not None and (digits >= 0).any():
        pred = predicted_digits.cpu().numpy()
        keep = digits >= 0
        out["digit"], out["n_digit"] = float((pred[keep] == digits[keep]).mean()), int(keep.sum())
    measured = bins.attributes(samples.cpu(), np.where(digits >= 0, digits, 0))
    for a in ATTRIBUTES:
        want = np.array([x[a] if x[a] is not None else -1 for x in asked])
        keep = want >= 0
        if keep.any():
            out[a], out[f"n_{a}"] = float((measured[a][keep] == want[keep]).mean()), int(keep.sum())
    return out


def attribute_prompts(digits: Sequence[int] = range(10)) -> list:
    """Prompts that each name a digit and one attribute's outer word ('a thick seven', 'a seven slanting left', ...),
    the set prompt fidelity is measured on."""
    out = []
    for d in digits:
        for a in ATTRIBUTES:
            for b in (0, 2):
                word = WORDS[a][b]
                out.append(f"a {DIGITS[d]} {word}" if a == "slant" else f"a {word} {DIGITS[d]}")
    return out
