"""The divergence tr(dF/dx) of a vector field, exact or by Hutchinson's estimator z^T (dF/dx) z (Hutchinson 1989):
one home for the ODE likelihood's change of variables and the score-matching losses' tr(grad s)."""
from __future__ import annotations

from typing import Callable, Literal, Optional

import torch

from .utils import Generator, randn

Probe = Literal["rademacher", "gaussian"]


def probe(shape, kind: Probe, generator: Generator, device=None, dtype=torch.float32) -> torch.Tensor:
    """A probe z with E[z z^T] = I: Rademacher (+-1) or standard Gaussian entries."""
    z = randn(shape, generator, device=device, dtype=dtype)
    return z.sign() if kind == "rademacher" else z


def repeat_batch(v: torch.Tensor, k: int) -> torch.Tensor:
    """A batch repeated k times along its first axis, as the exact trace repeats x: copy j of example i sits at
    j * batch + i (`Cond.repeat` does the same for a conditioning)."""
    return v if k == 1 else v.repeat(k, *([1] * (v.ndim - 1)))


def divergence(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, z: Optional[torch.Tensor] = None, *,
               create_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(F(x), div F(x)) per example for F = fn: with a probe z, Hutchinson's z^T (dF/dx) z (unbiased for E[z z^T] =
    I); without, the exact trace, from one pass of the batch repeated d times (fn must accept any batch size that is a
    multiple of x's). `create_graph` keeps the graph, so the divergence itself can be differentiated (training)."""
    b, d = x.shape[0], x[0].numel()
    with torch.enable_grad():
        if z is not None:
            xg = x.detach().requires_grad_(True)
            out = fn(xg)
            div = (torch.autograd.grad(out, xg, z, create_graph=create_graph)[0] * z).reshape(b, -1).sum(1)
            return out, div
        xg = repeat_batch(x.detach(), d).requires_grad_(True)
        out = fn(xg)
        basis = torch.eye(d, dtype=x.dtype, device=x.device).repeat_interleave(b, 0).reshape(xg.shape)
        grads = torch.autograd.grad(out, xg, basis, create_graph=create_graph)[0]
        return out[:b], (grads * basis).reshape(d, b, -1).sum((0, 2))
