"""How a training run stops short: a non-finite loss, an interruption, another set-up, divergence."""


class NonFiniteError(ValueError):
    """The loss or the gradient became NaN or infinite (train.nonfinite='stop')."""


class TrainingInterrupted(Exception):
    """Ctrl-C or SIGTERM: the run saved a checkpoint at `step` and stopped; the same command resumes it."""

    def __init__(self, step: int, checkpoint):
        super().__init__(f"interrupted at step {step}; checkpoint {checkpoint}; run the same command again to resume")
        self.step, self.checkpoint = step, checkpoint


class IncompatibleRun(ValueError):
    """A resume asked of a run folder whose checkpoints come from another data set, network or process."""


class TrainingDiverged(NonFiniteError):
    """The loss said training has diverged (a GAN's discriminator winning outright); the last checkpoint is kept."""
