"""The run configuration: every section of a YAML file (or flags) checked against the constructor it feeds, whole,
before any work; and the builders of the cheap pieces (process, loss, sections)."""
from __future__ import annotations

import copy
import inspect
import re
from dataclasses import dataclass, field, fields
from typing import Optional

from torch import nn

from ..config import check_arguments, require
from ..denoiser import CLDDenoiser, Denoiser
from ..nets import MLP, EncoderDiscriminator, UNet
from ..objectives import (ADVERSARIAL_OBJECTIVES, BOUND_OBJECTIVES, CONSISTENCY_OBJECTIVES, ENERGY_OBJECTIVES,
                          OBJECTIVES, RecoveryEBM)
from ..processes import PROCESSES, CLDProcess, DiscreteVP
from ..samplers import check_request
from .checks import check_cld, check_energy, check_flow, check_joint
from ..cascade import SuperResolution
from ..train import TrainConfig


@dataclass
class RunConfig:
    """One training run: every field can come from YAML and be overridden by flags."""
    data: str = "mnist"
    stream: bool = False                             # an image folder read batch by batch, not loaded whole
    image_size: Optional[int] = None
    channels: Optional[int] = None
    class_cond: bool = False
    text_cond: bool = False                          # conditioned on the data's captions (a text encoder in the U-Net)
    text: dict = field(default_factory=dict)         # TextSettings: the tokenizer's and text encoder's sizes
    unclip: Optional[dict] = None                    # UnCLIPSettings: a DALL-E 2 prior or decoder on a train-clip run
    net: dict = field(default_factory=dict)          # UNet or MLP arguments
    process: dict = field(default_factory=dict)      # kind (PROCESSES) and that process's arguments
    prediction: str = "eps"
    sigma_data: float = 0.5
    clip_x0: Optional[float] = None
    objective: str = "simple"                        # OBJECTIVES: simple, hybrid, vlb, dsm, ssm or esm
    learned_variance: Optional[bool] = None          # null: learned for objective hybrid or vlb, fixed for simple
    consistency: Optional[bool] = None               # null: the consistency function f for objective consistency
    loss: dict = field(default_factory=dict)         # the objective's loss arguments (OBJECTIVES)
    discriminator: dict = field(default_factory=dict)  # objective ddgan: the discriminator's network arguments
    train: dict = field(default_factory=dict)        # TrainConfig fields
    latent: Optional[str] = None                     # a train-autoencoder run: diffuse in its latents
    latent_init: str = "pretrained"                  # objective lsgm: the VAE starts from latent's weights, or scratch
    mixed_score: Optional[float] = None              # LSGM's mixed score: the initial mixing coefficient (eps only)
    super_resolution: Optional[dict] = None          # SuperResolution: a cascade's stage conditioned on low_size images
    sample: dict = field(default_factory=lambda: {"sampler": "ddpm", "steps": 100, "schedule": None, "options": {},
                                                  "n": 64, "seed": 0})
    eval: dict = field(default_factory=lambda: {"sampler": "ddpm", "steps": 50, "schedule": None, "options": {},
                                                "n": 500, "seed": 12345})

    @classmethod
    def from_dict(cls, d) -> "RunConfig":
        """A run config from a parsed YAML mapping, every section checked against the constructor it feeds."""
        base = cls()
        values = objective_defaults(top_level(cls, d, "data: ..., net: ..., train: ..."))
        merged = {}
        for f in fields(cls):
            default = getattr(base, f.name)
            value = values.get(f.name, default)
            if f.name in ("sample", "eval"):
                process = build_process(values.get("process", base.process))
                by_objective = CONSISTENCY_SAMPLING if values.get("objective") in CONSISTENCY_OBJECTIVES else {}
                if values.get("objective") in ADVERSARIAL_OBJECTIVES + ENERGY_OBJECTIVES:  # the T trained steps
                    by_objective = {"sampler": "ddgan" if values["objective"] in ADVERSARIAL_OBJECTIVES else "recovery",
                                    "steps": int(round(process.t_max)) + 1, "schedule": "uniform"}
                value = {**default, **process.sampling_defaults(), **by_objective, **values.get(f.name, {})}
            merged[f.name] = value
        rc = cls(**merged)
        rc.check()
        return rc

    def check(self) -> None:
        """Everything that does not need the data: sections, ranges, sampling; the cheap constructors are built."""
        require(self.image_size is None or self.image_size >= 1, "image_size", "a positive integer or null",
                self.image_size)
        require(self.channels in (None, 1, 3), "channels", "1 (grey), 3 (RGB) or null", self.channels)
        require(self.latent is None or (isinstance(self.latent, str) and self.latent), "latent",
                "the path of a 'denoisekit train-autoencoder' run, or null", self.latent)
        check_net_keys(self.net, energy=self.objective in ENERGY_OBJECTIVES)
        check_text(self)
        check_unclip(self)
        check_super_resolution(self)
        process = build_process(self.process)
        check_adversarial(self, process)
        check_energy(self, process)
        check_flow(self, process)
        check_cld(self, process)
        check_joint(self, process)
        if self.objective in BOUND_OBJECTIVES and process.grid_step == 0:
            raise ValueError(f"objective: {self.objective} sums the discrete variational bound; it needs process.kind "
                             f"ddpm, not a continuous process")
        loss = build_loss(self)
        train = build_section("train", TrainConfig, self.train, reserved={"use_labels": "set by class_cond"})
        if train.compile and getattr(loss, "double_backward", False):
            raise ValueError(f"train.compile: objective {self.objective} differentiates tr(grad s) (a double "
                             f"backward), which torch.compile does not support; set train.compile: false")
        make_denoiser(self, nn.Identity(), process)
        if self.objective in ENERGY_OBJECTIVES:
            RecoveryEBM(nn.Identity(), process, loss.chain.steps, loss.chain.b)
        for section in ("sample", "eval"):
            check_sampling(getattr(self, section), section, process)

    def as_dict(self) -> dict:
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}


# What objective ddgan changes in a run config's defaults (a key the config sets wins): the generator predicts x0
# from a latent z, over 4 steps of the paper's few-step VP schedule, with Adam's betas of GAN training (Xiao et al. 2022).
DDGAN_DEFAULTS = {"prediction": "x0", "process": {"kind": "ddpm", "schedule": "vp", "T": 4},
                  "net": {"latent_dim": 32}, "train": {"betas": [0.5, 0.9]}}
# What objective recovery changes: the paper's 6 levels (Gao et al. 2021).
RECOVERY_DEFAULTS = {"process": {"kind": "ddpm", "schedule": "drl", "T": 6}}
# What objective flow changes: the straight path and its velocity u = eps - x0 (Lipman et al. 2023).
FLOW_DEFAULTS = {"prediction": "flow", "process": {"kind": "flow"}}
# What objective hsm changes: critically-damped Langevin diffusion with the mixed score (Dockhorn et al. 2022).
CLD_DEFAULTS = {"prediction": "mixed", "process": {"kind": "cld"}}
# What objective lsgm changes: the prior on the VP SDE, eps with the mixed score (Vahdat et al. 2021, sec. 3.1; the
# paper starts the mixing coefficient near 0, sigmoid(-6): at a few thousand steps 0.5 leaves the residual room).
LSGM_DEFAULTS = {"prediction": "eps", "process": {"kind": "vp"}, "mixed_score": 0.5}
OBJECTIVE_DEFAULTS = {"ddgan": DDGAN_DEFAULTS, "recovery": RECOVERY_DEFAULTS, "flow": FLOW_DEFAULTS,
                      "hsm": CLD_DEFAULTS, "lsgm": LSGM_DEFAULTS}


def objective_defaults(values: dict) -> dict:
    """The checked top level with the defaults objective ddgan, recovery or flow brings; a process of another kind is
    left alone (and refused by check_adversarial, the energy model or check_flow)."""
    defaults = OBJECTIVE_DEFAULTS.get(values.get("objective"))
    if defaults is None:
        return values
    out = dict(values)
    for key, default in defaults.items():
        given = values.get(key)
        if not isinstance(default, dict):
            out.setdefault(key, default)
        elif key == "process" and isinstance(given, dict) and given.get("kind", "ddpm") != "ddpm":
            continue
        elif given is None or isinstance(given, dict):
            out[key] = {**default, **(given or {})}
    return out


def build_super_resolution(rc: "RunConfig") -> Optional[SuperResolution]:
    """The run's super-resolution stage (Ho et al. 2021) from its section, or None for a one-stage model."""
    if rc.super_resolution is None:
        return None
    if not isinstance(rc.super_resolution, dict):
        raise ValueError(f"super_resolution: expected a mapping (low_size, aug_max, aug_level), got "
                         f"{type(rc.super_resolution).__name__}")
    return build_section("super_resolution", SuperResolution, rc.super_resolution)


def check_super_resolution(rc: "RunConfig") -> None:
    """One-line errors for a super-resolution stage: pixels (not a latent model), and a denoiser's objective."""
    if build_super_resolution(rc) is None:
        return
    if rc.latent is not None:
        raise ValueError("super_resolution: a cascade's stages work on pixels; remove latent (or super_resolution)")
    if rc.objective in ADVERSARIAL_OBJECTIVES + ENERGY_OBJECTIVES:
        raise ValueError(f"super_resolution: objective {rc.objective} trains no conditional denoiser; use simple, "
                         f"hybrid, vlb, dsm or consistency")


def check_text(rc: "RunConfig") -> None:
    """One-line errors for text conditioning: the text section's keys, one kind of conditioning, a pixel U-Net."""
    from .text import settings_of
    settings_of(rc.text)
    if rc.text and not rc.text_cond:
        raise ValueError("text: sizes a text-conditional model's tokenizer and encoder; set text_cond: true (or "
                         "remove the section)")
    if not rc.text_cond:
        return
    for key, why in (("class_cond", "a caption names the class"), ("latent", "text models work on pixels for now"),
                     ("stream", "captioned data is loaded whole for now")):
        if getattr(rc, key):
            raise ValueError(f"text_cond: {why}; remove {key}")
    if rc.objective not in ("simple", "hybrid", "vlb", "dsm", "flow"):
        raise ValueError(f"text_cond: objective {rc.objective} trains no text-conditional denoiser; use simple, "
                         f"hybrid, vlb, dsm or flow")


def check_unclip(rc: "RunConfig") -> None:
    """One-line errors for an unCLIP stage: its section's keys, and no other conditioning."""
    if rc.unclip is None:
        return
    from .unclip import UnCLIPSettings
    if not isinstance(rc.unclip, dict):
        raise ValueError(f"unclip: expected a mapping (clip, stage), got {type(rc.unclip).__name__}")
    build_section("unclip", UnCLIPSettings, rc.unclip)
    for key in ("class_cond", "text_cond", "latent", "super_resolution", "stream"):
        if getattr(rc, key):
            raise ValueError(f"unclip: its stages are conditioned on CLIP embeddings alone; remove {key}")
    if rc.objective not in ("simple", "hybrid", "vlb", "dsm", "flow"):
        raise ValueError(f"unclip: objective {rc.objective} trains no conditional denoiser; use simple, hybrid, vlb, "
                         f"dsm or flow")


def check_adversarial(rc: "RunConfig", process) -> None:
    """One-line errors for a DDGAN's settings: a discrete process, an x0-like prediction, a latent and a discriminator
    only where the objective trains them."""
    if rc.objective not in ADVERSARIAL_OBJECTIVES:
        if rc.discriminator:
            raise ValueError(f"discriminator: only objective ddgan trains a discriminator; objective {rc.objective} "
                             f"does not (remove the section)")
        if isinstance(rc.net, dict) and rc.net.get("latent_dim") is not None:
            raise ValueError(f"net.latent_dim: only a DDGAN generator reads a latent z; objective {rc.objective} "
                             f"trains a denoiser (remove it, or use objective ddgan)")
        return
    if process.grid_step == 0 or not hasattr(process, "betas"):
        raise ValueError(f"objective: ddgan takes a few large steps of a discrete process; it needs process.kind ddpm "
                         f"(schedule vp, T 2, 4 or 8), not {type(process).__name__}")
    if rc.prediction in ("eps", "score"):
        raise ValueError(f"prediction: a DDGAN generator predicts x0 (Xiao et al. 2022); {rc.prediction!r} cannot "
                         f"recover it where alpha is near 0 at a few large steps; use x0 (the default), v or edm")
    if isinstance(rc.net, dict) and not rc.net.get("latent_dim"):
        raise ValueError(f"net.latent_dim: a DDGAN generator reads a latent z; expected a positive size, got "
                         f"{rc.net.get('latent_dim')!r}")
    if rc.learned_variance or rc.consistency:
        raise ValueError(f"{'learned_variance' if rc.learned_variance else 'consistency'}: a DDGAN generator "
                         f"samples x0 through its latent; it has no variance to learn and is not a consistency model")
    check_discriminator_keys(rc.discriminator)


def make_denoiser(rc: "RunConfig", net: nn.Module, process, shape=(1,)):
    """The denoiser a run trains around its network for examples of `shape` (the mixed score's coefficients): a CLD
    denoiser on the state (x, v) of process cld, else the prediction converter of the scalar-Gaussian family."""
    if isinstance(process, CLDProcess):
        return CLDDenoiser(net, process, rc.prediction)
    mixed = {} if rc.mixed_score is None else {"mixed_score": rc.mixed_score, "mixed_shape": [int(k) for k in shape]}
    return Denoiser(net, process, rc.prediction, rc.sigma_data, rc.clip_x0, learns_variance(rc),
                    is_consistency_model(rc), **mixed)


def check_discriminator_keys(section) -> None:
    """The discriminator section's keys and types against the image discriminator and the vector (MLP) one."""
    if not isinstance(section, dict):
        raise ValueError(f"discriminator: expected a mapping of network settings, got {type(section).__name__}")
    check_section_keys("discriminator", section, EncoderDiscriminator, MLP,
                       {**RESERVED_NET, "latent_dim": "a discriminator reads no latent"})


def top_level(cls, d, example: str) -> dict:
    """A config file's top level checked against the dataclass `cls` (keys, types); an empty section ('net:' in
    YAML) means that section's defaults."""
    if d is None:
        d = {}
    if not isinstance(d, dict):
        raise ValueError(f"config: expected a mapping of settings ({example}), got {type(d).__name__} "
                         f"{str(d)[:60]!r}")
    base = cls()
    d = {k: {} if v is None and isinstance(getattr(base, k, None), dict) else v for k, v in d.items()}
    return check_arguments("", cls, d)


def build_process(section):
    """The process named by the section's `kind` (ddpm by default), built from the section's other keys."""
    if not isinstance(section, dict):
        return build_section("process", DiscreteVP, section)
    values = dict(section)
    kind = values.pop("kind", "ddpm")
    if kind not in PROCESSES:
        raise ValueError(f"process.kind: expected one of {', '.join(PROCESSES)}, got {kind!r}")
    return build_section("process", PROCESSES[kind], values)


def build_loss(rc: RunConfig):
    """The objective's loss from the loss section (its keys checked against that loss's arguments)."""
    if rc.objective not in OBJECTIVES:
        raise ValueError(f"objective: expected one of {', '.join(OBJECTIVES)}, got {rc.objective!r}")
    return build_section("loss", OBJECTIVES[rc.objective], loss_arguments(rc))


def learns_variance(rc: RunConfig) -> bool:
    """Whether the network also outputs the variance interpolation v: by default exactly when the objective trains it."""
    if rc.learned_variance is None:
        return rc.objective in BOUND_OBJECTIVES
    if rc.learned_variance and rc.objective not in BOUND_OBJECTIVES:
        raise ValueError(f"learned_variance: objective {rc.objective} gives the variance no training signal; use "
                         f"objective hybrid or vlb to learn it")
    return rc.learned_variance


# A consistency model samples in one to a few evaluations of f (Song et al. 2023, Alg. 1), not with a denoiser's
# sampler.
CONSISTENCY_SAMPLING = {"sampler": "consistency", "steps": 2, "schedule": None}


def is_consistency_model(rc: RunConfig) -> bool:
    """Whether the network is the consistency function f(x, s) (Song et al. 2023): by default exactly when the
    objective trains one."""
    trains_f = rc.objective in CONSISTENCY_OBJECTIVES
    if rc.consistency is None:
        return trains_f
    if rc.consistency and not trains_f:
        raise ValueError(f"consistency: objective {rc.objective} trains a denoiser by regression; a consistency model "
                         f"is trained by objective consistency or by 'denoisekit distill'")
    if not rc.consistency and trains_f:
        raise ValueError(f"consistency: objective {rc.objective} trains the consistency function f(x, s); leave "
                         f"consistency true (or unset)")
    return rc.consistency


def loss_arguments(rc: RunConfig) -> dict:
    """The loss section, with label dropout p_uncond = 0.1 by default for a class-conditional model (one network for
    p(x | y) and p(x): classifier-free guidance needs both)."""
    if not isinstance(rc.loss, dict):
        return rc.loss
    if rc.objective in CONSISTENCY_OBJECTIVES and rc.loss.get("total_steps") is None:  # the curriculum's K
        steps = rc.train.get("steps", TrainConfig.steps) if isinstance(rc.train, dict) else TrainConfig.steps
        rc = copy.copy(rc)
        rc.loss = {**rc.loss, "total_steps": steps}
    if not (rc.class_cond or rc.text_cond or rc.unclip):
        if rc.loss.get("p_uncond"):
            raise ValueError("loss.p_uncond: drops class labels or captions, so it needs class_cond or text_cond: true")
        return rc.loss
    if "p_uncond" not in inspect.signature(OBJECTIVES[rc.objective]).parameters:
        return rc.loss  # a loss without label dropout (a DDGAN's players always see the label)
    return {"p_uncond": 0.1, **rc.loss}


# Network arguments the recipe sets from the data and the run config, never from the net section.
RESERVED_NET = {"in_channels": "set from the data", "dim": "set from the data", "num_classes": "set by class_cond",
                "text": "set by text_cond (and the text section)",
                "pooled_dim": "set by conditioning recipes that give a pooled vector, not by a run config",
                "cond_channels": "set by conditioning recipes, not by a run config",
                "augment": "set by super_resolution",
                "out_channels": "set by the prediction type", "out_dim": "set by the prediction type"}


def check_net_keys(net: dict, energy: bool = False) -> None:
    """The net section's keys and types against the U-Net and the MLP (which one is known once the data is loaded);
    for an energy model, against its image network (the encoder) and the MLP."""
    if energy:
        check_section_keys("net", net, EncoderDiscriminator, MLP,
                           {**RESERVED_NET, "latent_dim": "an energy network reads no latent"})
    else:
        check_section_keys("net", net, UNet, MLP, RESERVED_NET)


def check_section_keys(name: str, section: dict, image_net, vector_net, reserved: dict) -> None:
    """A network section's keys and types against the image network and the vector one (which one is known once the
    data is loaded); `reserved` keys are set by the recipe, never by the section."""
    image, vector = (set(inspect.signature(c).parameters) - set(reserved) for c in (image_net, vector_net))
    for key, value in section.items():
        if key in reserved:
            raise ValueError(f"{name}.{key}: {reserved[key]}; remove it from the config")
        if key not in image | vector:
            raise ValueError(f"{name}: unknown key {key!r}; the {image_net.__name__} (images) takes some of "
                             f"{sorted(image)}, the {vector_net.__name__} (vectors) some of {sorted(vector)}")
        check_arguments(name, image_net if key in image else vector_net, {key: value})


def build_section(name: str, cls, values, reserved: Optional[dict] = None, **fixed):
    """cls(**fixed, **values) for a config section, its errors named by section and key (`process.T: ...`)."""
    kwargs = check_arguments(name, cls, values, reserved=reserved)
    try:
        return cls(**fixed, **kwargs)
    except (ValueError, TypeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"{name}.{msg}" if re.match(r"^[A-Za-z_][\w\[\]]*: ", msg) else f"{name}: {msg}") from None


def check_sampling(section: dict, name: str, process=None) -> None:
    """Validate a run config's sampling section (sampler, steps, schedule, options, n, seed) before any work; given
    the process, also its times and the sampler's options for them."""
    known = {"sampler", "steps", "schedule", "options", "n", "seed"}
    unknown = set(section) - known
    if unknown:
        raise ValueError(f"{name}: unknown keys {sorted(unknown)}; expected some of {sorted(known)}")
    for key in ("steps", "n"):
        v = section[key]
        require(isinstance(v, int) and not isinstance(v, bool) and v >= 1, f"{name}.{key}", "a positive integer", v)
    seed = section["seed"]
    require(isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0, f"{name}.seed", "an integer >= 0",
            seed)
    require(isinstance(section["sampler"], str), f"{name}.sampler", "a sampler name", section["sampler"])
    require(section["schedule"] is None or isinstance(section["schedule"], str), f"{name}.schedule",
            "a schedule name or null", section["schedule"])
    if section["options"] is None:
        section["options"] = {}
    require(isinstance(section["options"], dict), f"{name}.options", "a mapping of sampler options",
            section["options"])
    try:
        check_request(section["sampler"], section["schedule"], section["options"], where=f"{name}.schedule",
                      process=process, steps=section["steps"])
    except ValueError as e:
        msg = str(e)
        if msg.startswith((f"{name}.", f"{name}:")):
            raise
        key = re.match(r"^(\w+): ", msg)
        if key and key.group(1) in section["options"]:
            raise ValueError(f"{name}.options.{msg}") from None
        named = key and key.group(1) in ("steps", "schedule")
        raise ValueError(f"{name}.{msg}" if named else f"{name}: {msg}") from None
