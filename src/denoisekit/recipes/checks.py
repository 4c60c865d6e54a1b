"""One-line errors for the settings one process or objective owns (flow matching, CLD, recovery-likelihood EBMs,
LSGM), and for those settings where they do not belong; the run config calls them before any work."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import require
from ..objectives import ENERGY_OBJECTIVES, FLOW_TIME_SAMPLINGS, LATENT_OBJECTIVES
from ..objectives.lsgm import check_prior_process
from ..processes import CLDProcess, FlowProcess

if TYPE_CHECKING:
    from .config import RunConfig

LATENT_INITS = ("pretrained", "scratch")  # objective lsgm's VAE: the latent run's weights, or fresh ones


def check_flow(rc: "RunConfig", process) -> None:
    """One-line errors for flow-matching options on another process: the objective and the flow's time densities."""
    if isinstance(process, FlowProcess):
        return
    if rc.objective == "flow":
        raise ValueError(f"objective: flow matching trains on the straight path x_t = (1 - t) x0 + t eps; it needs "
                         f"process.kind flow, not {type(process).__name__}")
    t_sampling = rc.loss.get("t_sampling") if isinstance(rc.loss, dict) else None
    if t_sampling in FLOW_TIME_SAMPLINGS:
        raise ValueError(f"loss.t_sampling: {t_sampling} is a density over the flow path's t in (0, 1) (Esser et al. "
                         f"2024); it needs process.kind flow, not {type(process).__name__} (use uniform or lognormal)")


def check_joint(rc: "RunConfig", process) -> None:
    """One-line errors for LSGM's end-to-end training (objective lsgm): it starts from an autoencoder run, its prior
    is an unconditional score model on the VP SDE; and latent_init means nothing to another objective."""
    if rc.objective not in LATENT_OBJECTIVES:
        if rc.latent_init != "pretrained":
            raise ValueError(f"latent_init: only objective lsgm trains the autoencoder; objective {rc.objective} "
                             f"keeps it frozen (remove latent_init, or use objective lsgm)")
        return
    require(rc.latent_init in LATENT_INITS, "latent_init", "pretrained (the autoencoder run's weights) or scratch "
            "(fresh weights of its architecture)", rc.latent_init)
    if rc.latent is None:
        raise ValueError("latent: objective lsgm trains a VAE and its latent score prior end to end, starting from an "
                         "autoencoder run; give latent: AE_RUN (--latent), made by 'denoisekit train-autoencoder'")
    check_prior_process(process)
    for key in ("class_cond", "learned_variance", "consistency", "super_resolution", "clip_x0"):
        if getattr(rc, key):
            raise ValueError(f"{key}: not available with objective lsgm (an unconditional score prior on a VAE's "
                             f"latents); remove it")


def check_cld(rc: "RunConfig", process) -> None:
    """One-line errors for critically-damped Langevin diffusion: it trains by hybrid score matching, predicts the
    velocity noise (or the mixed score's residual), and has none of the scalar family's options; and those options of
    its own are refused on another process."""
    if not isinstance(process, CLDProcess):
        if rc.objective == "hsm":
            raise ValueError(f"objective: hybrid score matching trains on the state (x, v) of process.kind cld, not "
                             f"{type(process).__name__}")
        if rc.prediction == "mixed":
            raise ValueError(f"prediction: the mixed score is CLD's (process.kind cld); process "
                             f"{type(process).__name__} takes eps, x0, v, score, edm or flow")
        return
    if rc.objective != "hsm":
        raise ValueError(f"objective: process cld is trained by hybrid score matching (objective hsm), not "
                         f"{rc.objective}")
    for key in ("learned_variance", "consistency", "clip_x0", "super_resolution", "mixed_score"):
        if getattr(rc, key):
            raise ValueError(f"{key}: not available with process cld (a velocity score on the state (x, v)); "
                             f"remove it")


def check_energy(rc: "RunConfig", process) -> None:
    """One-line errors for a recovery-likelihood EBM's settings that belong to denoisers (its levels are checked by
    the model: a discrete process with at least 2)."""
    if rc.objective not in ENERGY_OBJECTIVES:
        return
    if rc.learned_variance or rc.consistency:
        raise ValueError(f"{'learned_variance' if rc.learned_variance else 'consistency'}: a recovery-likelihood EBM "
                         f"learns an energy per level, not a denoiser; remove it")
    if rc.clip_x0 is not None:
        raise ValueError("clip_x0: a recovery-likelihood EBM predicts no x0 to clip; remove it")
