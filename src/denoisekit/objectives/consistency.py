"""Consistency models (Song et al. 2023; Song & Dhariwal 2023): consistency distillation from a teacher's probability-
flow ODE step, consistency training without a teacher (the improved and the original curricula), their distances and
their target network, as losses `loss(student, x0, cond, generator) -> per-example loss` for the generic trainer."""
from __future__ import annotations

import copy
import math
from typing import Literal, Optional, get_args

import torch

from ..config import configurable, require
from ..samplers.ddim import ddim_step
from ..samplers.euler import heun_step
from ..samplers.times import karras_levels, level_range
from ..utils import Generator, rand, randn
from .simple import noised

Distance = Literal["l2", "l1", "pseudo_huber"]
DISTANCES = get_args(Distance)
TeacherSolver = Literal["heun", "euler"]
Curriculum = Literal["improved", "original"]


def distance(a: torch.Tensor, b: torch.Tensor, kind: str) -> torch.Tensor:
    """d(a, b) per example: mean squared ('l2'), mean absolute ('l1') error, or the pseudo-Huber sqrt(|a - b|^2 + c^2)
    - c with c = 0.00054 sqrt(dim) on the whole example's norm (Song & Dhariwal 2023, sec. 3.3)."""
    diff = (a.float() - b.float()).reshape(a.shape[0], -1)
    if kind == "l2":
        return diff.pow(2).mean(1)
    if kind == "l1":
        return diff.abs().mean(1)
    if kind == "pseudo_huber":
        c = 0.00054 * math.sqrt(diff.shape[1])
        return (diff.pow(2).sum(1) + c**2).sqrt() - c
    raise ValueError(f"distance: expected one of {', '.join(DISTANCES)}, got {kind!r}")


def check_student(student) -> None:
    """A consistency loss trains f(x, s) with its boundary condition: the student needs `consistency: true`."""
    if not getattr(student, "consistency", False):
        raise ValueError("consistency: a consistency loss trains the consistency function f(x, s) with f(x, s_min) "
                         "= x; build the student with consistency: true")


def pick_levels(process, levels: torch.Tensor, index: torch.Tensor, x0: torch.Tensor):
    """(t_n, t_{n+1}) for the adjacent levels sigma_n < sigma_{n+1} at each example's index n (times, float64)."""
    lo, hi = levels[index], levels[index + 1]
    return process.t_from_noise_level(lo).to(x0.device), process.t_from_noise_level(hi).to(x0.device)


class TargetNetwork:
    """theta^- of a consistency loss: a frozen copy of the student, made at the first step, moved to mu theta^- +
    (1 - mu) theta after each optimizer step (Song et al. 2023, Alg. 2), saved and resumed with the training state."""

    def __init__(self):
        self.model = None
        self._pending: Optional[dict] = None

    def __call__(self, student):
        if self.model is None:
            self.model = copy.deepcopy(student).requires_grad_(False)
            if self._pending is not None:
                self.model.load_state_dict(self._pending)
                self._pending = None
        return self.model

    @torch.no_grad()
    def update(self, student, mu: float) -> None:
        target = self(student)
        for p_t, p in zip(target.parameters(), student.parameters()):
            p_t.lerp_(p.detach(), 1 - mu)
        for b_t, b in zip(target.buffers(), student.buffers()):
            b_t.copy_(b)

    def state_dict(self) -> dict:
        if self.model is not None:
            return {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        return dict(self._pending or {})

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        if self.model is not None:
            self.model.load_state_dict(state)
        else:
            self._pending = state


@configurable
class ConsistencyDistillationLoss:
    """Consistency distillation (Song et al. 2023, Alg. 2): lambda d(f_theta(x_{n+1}, s_{n+1}), f_theta^-(x^_n, s_n))
    where x^_n is one Heun (or Euler) step of the teacher's probability-flow ODE from the adjacent Karras level
    s_{n+1} down to s_n, n ~ U{1..N-1}, and theta^- the student's EMA with rate `mu` (after each step).

    The teacher is attached with `with_teacher`; it is evaluated under no_grad and never trained."""

    def __init__(self, levels: int = 18, rho: float = 7.0, mu: float = 0.95, distance: Distance = "pseudo_huber",
                 solver: TeacherSolver = "heun", weighting: Literal["uniform", "reciprocal"] = "uniform"):
        require(isinstance(levels, int) and not isinstance(levels, bool) and levels >= 2, "levels",
                "an integer of at least 2 (the Karras levels N)", levels)
        require(rho > 0, "rho", "a positive number", rho)
        require(0 <= mu < 1, "mu", "a number in [0, 1) (the target network's EMA rate)", mu)
        require(distance in DISTANCES, "distance", f"one of {', '.join(DISTANCES)}", distance)
        require(solver in get_args(TeacherSolver), "solver", "'heun' or 'euler'", solver)
        require(weighting in ("uniform", "reciprocal"), "weighting", "'uniform' or 'reciprocal'", weighting)
        self.levels, self.rho, self.mu, self.distance = levels, rho, mu, distance
        self.solver, self.weighting = solver, weighting
        self.teacher = None
        self.target = TargetNetwork()

    def with_teacher(self, teacher) -> "ConsistencyDistillationLoss":
        self.teacher = teacher.requires_grad_(False) if hasattr(teacher, "requires_grad_") else teacher
        return self

    @torch.no_grad()
    def teacher_step(self, x: torch.Tensor, t: torch.Tensor, s: torch.Tensor, cond) -> torch.Tensor:
        """x^_n: the teacher's ODE step from t_{n+1} to t_n."""
        step = heun_step if self.solver == "heun" else ddim_step
        return step(self.teacher, x, t, s, cond=cond)[0]

    def __call__(self, student, x0: torch.Tensor, cond=None, generator: Generator = None) -> torch.Tensor:
        if self.teacher is None:
            raise ValueError("teacher: consistency distillation needs a teacher (loss.with_teacher(denoiser))")
        check_student(student)
        process = student.process
        levels = karras_levels(*level_range(process), self.levels, self.rho)
        n = (rand((x0.shape[0],), generator, dtype=torch.float64) * (self.levels - 1)).floor().long()
        n = n.clamp(max=self.levels - 2)
        t_n, t_next = pick_levels(process, levels, n, x0)
        _, x_next, cond = noised(process, x0, t_next, cond, 0.0, generator)
        x_hat = self.teacher_step(x_next, t_next, t_n, cond)
        with torch.no_grad():
            target = self.target(student)(x_hat, t_n, cond).x0
        d = distance(student(x_next, t_next, cond, clip=False).x0, target, self.distance)
        if self.weighting == "reciprocal":
            d = d / (levels[n + 1] - levels[n]).to(d)
        return d

    def after_step(self, model, step: int) -> None:
        self.target.update(model, self.mu)

    def state_dict(self) -> dict:
        return {f"target.{k}": v for k, v in self.target.state_dict().items()}

    def load_state_dict(self, state: dict) -> None:
        self.target.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("target.")})


def improved_levels_count(k: int, total: int, s0: int, s1: int) -> int:
    """N(k) = min(s0 2^floor(k / K'), s1) + 1, K' = floor(K / (log2 floor(s1 / s0) + 1)) (Song & Dhariwal 2023,
    eq. 8)."""
    k_prime = max(1, math.floor(total / (math.log2(math.floor(s1 / s0)) + 1)))
    return min(s0 * 2 ** (k // k_prime), s1) + 1


def original_levels_count(k: int, total: int, s0: int, s1: int) -> int:
    """N(k) = ceil(sqrt(k / K ((s1 + 1)^2 - s0^2) + s0^2) - 1) + 1 (Song et al. 2023, app. C)."""
    return math.ceil(math.sqrt(k / total * ((s1 + 1) ** 2 - s0**2) + s0**2) - 1) + 1


@configurable
class ConsistencyTrainingLoss:
    """Consistency training without a teacher: lambda(s_n) d(f_theta(x0 + s_{n+1} z, s_{n+1}), f_theta^-(x0 + s_n z,
    s_n)) with one z for both (Song et al. 2023, Alg. 3).

    'improved' (Song & Dhariwal 2023): N(k) doubles from s0 = 10 to s1 = 1280 levels over the run, n is drawn with
    the log-normal weights erf((ln s_{n+1} - P_mean) / (sqrt 2 P_std)) - erf((ln s_n - P_mean) / (sqrt 2 P_std)),
    lambda = 1 / (s_{n+1} - s_n), pseudo-Huber distance, theta^- = stopgrad(theta). 'original' (Song et al. 2023):
    N(k) grows as a square root from s0 = 2 to s1 = 150, n uniform, lambda = 1, theta^- an EMA with rate
    mu(k) = exp(s0 ln mu0 / N(k)). `total_steps` is the run's K (the recipe fills it from train.steps)."""

    term_names = ("levels",)

    def __init__(self, curriculum: Curriculum = "improved", total_steps: Optional[int] = None,
                 s0: Optional[int] = None, s1: Optional[int] = None, rho: float = 7.0,
                 distance: Optional[Distance] = None, p_mean: float = -1.1, p_std: float = 2.0, mu0: float = 0.9):
        require(curriculum in get_args(Curriculum), "curriculum", "'improved' or 'original'", curriculum)
        require(total_steps is None or (isinstance(total_steps, int) and total_steps >= 1), "total_steps",
                "a positive integer (the run's training steps) or null", total_steps)
        improved = curriculum == "improved"
        s0 = (10 if improved else 2) if s0 is None else s0
        s1 = (1280 if improved else 150) if s1 is None else s1
        require(isinstance(s0, int) and s0 >= 2, "s0", "an integer of at least 2 (the first number of levels)", s0)
        require(isinstance(s1, int) and s1 >= s0, "s1", f"an integer of at least s0 = {s0}", s1)
        require(rho > 0, "rho", "a positive number", rho)
        require(p_std > 0, "p_std", "a positive number", p_std)
        require(0 <= mu0 < 1, "mu0", "a number in [0, 1)", mu0)
        distance = distance or ("pseudo_huber" if improved else "l2")
        require(distance in DISTANCES, "distance", f"one of {', '.join(DISTANCES)}", distance)
        self.curriculum, self.total_steps, self.s0, self.s1, self.rho = curriculum, total_steps, s0, s1, rho
        self.distance, self.p_mean, self.p_std, self.mu0 = distance, p_mean, p_std, mu0
        self.step = 0
        self.target = TargetNetwork()

    def levels_count(self, k: int) -> int:
        """N(k), the number of levels at training step k."""
        if self.total_steps is None:
            raise ValueError("total_steps: consistency training's curriculum needs the run's number of steps K")
        count = improved_levels_count if self.curriculum == "improved" else original_levels_count
        return count(min(k, self.total_steps), self.total_steps, self.s0, self.s1)

    def level_weights(self, levels: torch.Tensor) -> torch.Tensor:
        """p(n) over the N - 1 adjacent pairs: log-normal mass between them (improved), or uniform (original)."""
        if self.curriculum == "original":
            return torch.full((len(levels) - 1,), 1.0 / (len(levels) - 1), dtype=torch.float64)
        cdf = torch.erf((levels.log() - self.p_mean) / (math.sqrt(2) * self.p_std))
        w = (cdf[1:] - cdf[:-1]).clamp(min=0)
        return w / w.sum()

    def terms(self, student, x0: torch.Tensor, cond=None, generator: Generator = None) -> dict:
        check_student(student)
        process = student.process
        count = self.levels_count(self.step)
        levels = karras_levels(*level_range(process), count, self.rho)
        cdf = self.level_weights(levels).cumsum(0)
        u = rand((x0.shape[0],), generator, dtype=torch.float64) * cdf[-1]
        n = torch.searchsorted(cdf, u, right=True).clamp(max=count - 2)
        t_n, t_next = pick_levels(process, levels, n, x0)
        z = randn(x0.shape, generator, device=x0.device, dtype=x0.dtype)
        x_next, x_n = process.q_sample(x0, t_next, z), process.q_sample(x0, t_n, z)
        with torch.no_grad():
            teacher = student if self.curriculum == "improved" else self.target(student)
            target = teacher(x_n, t_n, cond).x0
        d = distance(student(x_next, t_next, cond, clip=False).x0, target, self.distance)
        if self.curriculum == "improved":
            d = d / (levels[n + 1] - levels[n]).to(d)
        return {"loss": d, "levels": torch.full_like(d, float(count))}

    def __call__(self, student, x0: torch.Tensor, cond=None, generator: Generator = None) -> torch.Tensor:
        return self.terms(student, x0, cond, generator)["loss"]

    def mu(self, k: int) -> float:
        """The original curriculum's target EMA rate mu(k) = exp(s0 ln mu0 / N(k))."""
        return math.exp(self.s0 * math.log(self.mu0) / self.levels_count(k))

    def after_step(self, model, step: int) -> None:
        if self.curriculum == "original":
            self.target.update(model, self.mu(self.step))
        self.step = step

    def state_dict(self) -> dict:
        return {"step": self.step, **{f"target.{k}": v for k, v in self.target.state_dict().items()}}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state.get("step", 0))
        self.target.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("target.")})
