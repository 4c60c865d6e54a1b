"""Pluggable samplers of the training step t for losses over a discrete process: `draw(n) -> (indices, weights)` with
E[weight * L_t] = (1/T) sum_t L_t, and `update(indices, losses)`; their state goes into the checkpoint."""
from __future__ import annotations

import torch

from ..config import require
from ..utils import Generator, rand


class UniformTimes:
    """t ~ U{0..T-1}, weight 1."""

    def __init__(self, T: int):
        self.T = T

    def probabilities(self) -> torch.Tensor:
        return torch.full((self.T,), 1 / self.T, dtype=torch.float64)

    def draw(self, n: int, generator: Generator = None):
        """n step indices and their importance weights 1 / (T p_t)."""
        p = self.probabilities()
        u = rand((n,), generator, dtype=torch.float64)
        idx = torch.searchsorted(p.cumsum(0), u * float(p.sum()), right=True).clamp(max=self.T - 1)
        return idx, 1 / (self.T * p[idx])

    def update(self, idx: torch.Tensor, losses: torch.Tensor) -> None:
        """Nothing to learn for uniform sampling."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Nothing to restore."""


class ImportanceTimes(UniformTimes):
    """p_t proportional to sqrt(E[L_t^2]) over the last `history` values of each L_t, mixed with `uniform_prob` of
    the uniform distribution; uniform until every step has its full history (Nichol & Dhariwal 2021, eq. 18)."""

    def __init__(self, T: int, history: int = 10, uniform_prob: float = 0.001):
        super().__init__(T)
        require(isinstance(history, int) and history >= 1, "history", "a positive integer", history)
        require(0 < uniform_prob <= 1, "uniform_prob", "a probability in (0, 1]", uniform_prob)
        self.history, self.uniform_prob = history, uniform_prob
        self.values = torch.zeros(T, history, dtype=torch.float64)
        self.counts = torch.zeros(T, dtype=torch.long)

    @property
    def warm(self) -> bool:
        return bool((self.counts >= self.history).all())

    def probabilities(self) -> torch.Tensor:
        if not self.warm:
            return super().probabilities()
        w = self.values.pow(2).mean(1).sqrt()
        w = w / w.sum()
        return w * (1 - self.uniform_prob) + self.uniform_prob / self.T

    def update(self, idx: torch.Tensor, losses: torch.Tensor) -> None:
        """Push each L_t into its step's ring of the last `history` values."""
        for i, loss in zip(idx.tolist(), losses.detach().double().cpu().tolist()):
            self.values[i, self.counts[i] % self.history] = loss
            self.counts[i] += 1

    def state_dict(self) -> dict:
        return {"values": self.values.clone(), "counts": self.counts.clone()}

    def load_state_dict(self, state: dict) -> None:
        values, counts = state.get("values"), state.get("counts")
        if not isinstance(values, torch.Tensor) or values.shape != self.values.shape or \
                not isinstance(counts, torch.Tensor) or counts.shape != self.counts.shape:
            raise ValueError(f"checkpoint: the importance sampler's state does not fit T={self.T}, "
                             f"history={self.history}")
        self.values, self.counts = values.to(torch.float64).clone(), counts.to(torch.long).clone()
