"""CUDA graphs for sampling: the network's forward recorded once per input shape and replayed at every step, so a step
costs one launch instead of one per kernel. It pays at small batches, where a step's time is the CPU launching
kernels rather than the GPU running them; samplers need nothing from it (the network is swapped for the graphed one
while `cuda_graphs(denoiser)` is open)."""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch import nn

from ..conditioning import Cond


def cuda_capture(run: Callable[[], torch.Tensor], warmup: int = 3):
    """Record `run()` (which reads static input tensors) as a CUDA graph, after `warmup` eager calls on a side stream
    (cuDNN's autotuning and lazy allocations must not be recorded); (replay, the static output replay overwrites)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            run()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = run()
    return graph.replay, out


def eager_capture(run: Callable[[], torch.Tensor]):
    """What a replayed graph does, without a GPU: `run()` again on the static inputs, written into the same output
    storage (the test double of cuda_capture: it shares the graph's aliasing)."""
    out = run()
    return (lambda: out.copy_(run())), out


class GraphedNet(nn.Module):
    """`net(x, c_noise, cond)` replayed from a graph per (shapes, dtypes, conditioning slots); the inputs are copied
    into the graph's static tensors and the output cloned out of its pool. With gradients on, it runs eagerly."""

    def __init__(self, net: nn.Module, capture: Callable = cuda_capture):
        super().__init__()
        self.net, self.capture, self.graphs = net, capture, {}

    def __getattr__(self, name: str):  # the wrapped network's attributes (process_time, embed) read through
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("net"), name)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond=None) -> torch.Tensor:
        if torch.is_grad_enabled():
            return self.net(x, c_noise, cond)
        cond = Cond.of(cond)
        slots = cond.items() if cond is not None else []
        key = (tuple(x.shape), x.dtype, tuple(c_noise.shape), c_noise.dtype,
               tuple((k, tuple(v.shape), v.dtype) for k, v in slots))
        if key not in self.graphs:
            static = (x.clone(), c_noise.clone(), cond.map(torch.clone) if cond is not None else None)
            replay, out = self.capture(lambda: self.net(*static))
            self.graphs[key] = (static, replay, out)
        (sx, sc, scond), replay, out = self.graphs[key]
        sx.copy_(x)
        sc.copy_(c_noise)
        for k, v in slots:
            getattr(scond, k).copy_(v)
        replay()
        return out.clone()


@contextlib.contextmanager
def cuda_graphs(denoiser: nn.Module, capture: Callable = cuda_capture):
    """Within the block, `denoiser.net` runs from CUDA graphs (every sampler, guidance wrappers around it too)."""
    if not hasattr(denoiser, "net"):
        raise ValueError(f"cuda graphs: {type(denoiser).__name__} has no network (`net`) to record")
    net = denoiser.net
    denoiser.net = GraphedNet(net, capture)
    try:
        yield denoiser
    finally:
        denoiser.net = net
