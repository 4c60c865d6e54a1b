"""Progressive distillation (Salimans & Ho 2022, Alg. 2): a student learns in one DDIM step what its teacher does in
two, as a loss `loss(student, x0, cond, generator) -> per-example loss` for the generic trainer."""
from __future__ import annotations

from typing import Literal, get_args

import torch

from ..config import configurable, require
from ..samplers.base import step_coefficients
from ..samplers.ddim import ddim_step
from ..samplers.times import sampling_times
from ..utils import Generator, rand
from .simple import noised

Weighting = Literal["truncated_snr", "snr_plus_one"]
STUDENT_PREDICTIONS = ("x0", "v", "edm")  # bounded x0 at zero SNR: eps-prediction diverges at a student's first step


def distillation_times(process, steps: int) -> torch.Tensor:
    """The student's `steps` network times and then the data, 'trailing' spaced: t_max - k (t_max - t_min) / steps.
    The grid of 2N steps holds the grid of N at its even entries, so each stage's student steps are two of its
    teacher's (and `denoisekit sample --schedule trailing` samples a student on exactly its trained grid)."""
    return sampling_times(process, steps, "trailing")


@configurable
class ProgressiveDistillationLoss:
    """w(lambda_t) |x0_student(z_t, t) - x~|^2 with the target x~ = (z_t'' - (sigma_t'' / sigma_t) z_t) / (alpha_t'' -
    (sigma_t'' / sigma_t) alpha_t) that makes one DDIM step from t land where two teacher DDIM steps t -> t' -> t''
    land (Salimans & Ho 2022, Alg. 2; at the last step, t'' the data, the teacher's x0-hat at t'). t is one of the
    student's `steps` grid times, uniformly; weighting 'truncated_snr' is max(SNR, 1), 'snr_plus_one' SNR + 1 (the
    v-loss). The teacher is attached with `with_teacher` and never trained."""

    def __init__(self, steps: int, weighting: Weighting = "truncated_snr"):
        require(isinstance(steps, int) and not isinstance(steps, bool) and steps >= 1, "steps",
                "a positive integer (the student's number of sampling steps)", steps)
        require(weighting in get_args(Weighting), "weighting", f"one of {', '.join(get_args(Weighting))}", weighting)
        self.steps, self.weighting = steps, weighting
        self.teacher = None

    def with_teacher(self, teacher) -> "ProgressiveDistillationLoss":
        self.teacher = teacher.requires_grad_(False) if hasattr(teacher, "requires_grad_") else teacher
        return self

    @torch.no_grad()
    def target(self, z_t: torch.Tensor, t: torch.Tensor, t1: torch.Tensor, t2: torch.Tensor, cond) -> torch.Tensor:
        """x~: the x0 whose DDIM step from (z_t, t) lands on the teacher's two-step z_t''."""
        z1 = ddim_step(self.teacher, z_t, t, t1, cond=cond)[0]
        z2 = ddim_step(self.teacher, z1, t1, t2, cond=cond)[0]
        _, _, a, a2, lvl, lvl2 = step_coefficients(self.teacher.process, z_t, t, t2)
        ratio = (a2 * lvl2) / (a * lvl)  # sigma_t'' / sigma_t
        return (z2 - ratio * z_t) / (a2 - ratio * a)

    def __call__(self, student, x0: torch.Tensor, cond=None, generator: Generator = None) -> torch.Tensor:
        if self.teacher is None:
            raise ValueError("teacher: progressive distillation needs a teacher (loss.with_teacher(denoiser))")
        process = student.process
        grid = distillation_times(process, 2 * self.steps).to(x0.device)
        i = (rand((x0.shape[0],), generator, dtype=torch.float64) * self.steps).floor().long().clamp(max=self.steps - 1)
        t, t1, t2 = grid[2 * i], grid[2 * i + 1], grid[2 * i + 2]
        _, z_t, cond = noised(process, x0, t, cond, 0.0, generator)
        x_target = self.target(z_t, t, t1, t2, cond)
        err = (student(z_t, t, cond, clip=False).x0.float() - x_target.float()).pow(2).reshape(x0.shape[0], -1).mean(1)
        snr = (process.alpha(t) / process.sigma(t)) ** 2
        w = snr.clamp(min=1) if self.weighting == "truncated_snr" else snr + 1
        return err * w.to(err)
