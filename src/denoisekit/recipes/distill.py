"""`denoisekit distill`: a few-step student from a trained diffusion model, by progressive distillation (Salimans & Ho
2022: stages that halve the sampling steps, each a resumable run folder whose student teaches the next), by
consistency distillation (Song et al. 2023: one stage) or, from a flow-matching teacher, by reflow (Liu et al. 2023:
one stage trained on the teacher's ODE couplings; `denoisekit reflow`). The trainer and its checkpoints are the ones of
`train`; the losses are `objectives.distillation`, `objectives.consistency` and `ReflowLoss`."""
from __future__ import annotations

import copy
import dataclasses
import hashlib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional

import yaml

from ..config import build, require
from ..data import ArrayDataset, load_dataset
from ..denoiser import Denoiser
from ..images import save_picture
from ..objectives.consistency import ConsistencyDistillationLoss
from ..objectives.distillation import STUDENT_PREDICTIONS, ProgressiveDistillationLoss
from ..objectives.simple import ReflowLoss
from ..prediction import PREDICTION_TYPES
from ..processes import FlowProcess
from ..samplers import balanced_labels, generate
from ..samplers.recorded import CONSISTENCY_FALLBACK
from ..train import TrainConfig, Trainer
from ..train.checkpoint import EMA_WEIGHTS, load_state
from ..train.trainer import IncompatibleRun, resolve_device
from ..utils import atomic_save
from .build import data_fingerprint
from .config import build_section, top_level
from .reflow import PAIRS, check_pairs, teacher_pairs
from .run import compatibility_check, remove_outputs, start_run

METHODS = ("progressive", "consistency", "reflow")
METHOD_NAMES = {"consistency": "consistency distillation"}  # how an error names a method
# A reflowed student samples its straightened paths with Euler steps over the whole path (Liu et al. 2023).
REFLOW_SAMPLING = {"sampler": "euler", "steps": 2, "schedule": "trailing", "options": {}}
RECORD = "distill.yaml"  # the distillation's config, in the output folder beside stages/
# Per stage, unless the config says otherwise: a short fine-tune from the teacher, the learning rate annealed to zero
# within the stage (Salimans & Ho 2022 anneal it linearly; cosine here), a short EMA, no post-hoc EMA profiles.
STAGE_TRAIN = {"steps": 500, "lr": 1e-4, "lr_schedule": "cosine", "warmup_steps": 20, "ema_decay": 0.995,
               "ema_profiles": (), "checkpoint_every": 250, "log_every": 50, "sample_every": 0, "eval_every": 0}
# What a stage may inherit from the teacher's train section: how it ran, not how long or how fast it learned.
INHERITED_TRAIN = ("batch_size", "seed", "device", "amp", "channels_last", "grad_clip", "tensorboard", "progress",
                   "nonfinite", "betas")


@dataclass
class DistillConfig:
    """One distillation: every field can come from YAML (`--config`) and be overridden by flags."""
    method: str = "progressive"
    stages: Optional[list] = None        # progressive: the students' step counts, each half the one before
    prediction: Optional[str] = None     # the student's; null: the teacher's if bounded at zero SNR, else v
    guidance: Optional[float] = None     # classifier-free guidance w folded into the student (Meng et al. 2023)
    loss: dict = field(default_factory=dict)   # the loss's options (weighting; levels, rho, mu, distance, solver)
    pairs: dict = field(default_factory=dict)  # reflow: the couplings drawn from the teacher (n, sampler, steps, seed)
    train: dict = field(default_factory=dict)  # each stage's TrainConfig fields (over STAGE_TRAIN)
    sample: dict = field(default_factory=lambda: {"n": 64, "seed": 0})  # the picture at the end of each stage

    @classmethod
    def from_dict(cls, d) -> "DistillConfig":
        base, values = cls(), top_level(cls, d, "method: ..., stages: ..., train: ...")
        dc = cls(**{f.name: values.get(f.name, getattr(base, f.name)) for f in fields(cls)})
        dc.check()
        return dc

    def check(self) -> None:
        """Everything that needs neither the teacher nor the data."""
        require(self.method in METHODS, "method", f"one of {', '.join(METHODS)}", self.method)
        if self.method == "progressive":
            self.stages = check_stages([32, 16, 8, 4, 2, 1] if self.stages is None else self.stages)
        elif self.stages is not None:
            name = METHOD_NAMES.get(self.method, self.method)
            raise ValueError(f"stages: {name} is one stage (its student samples in 1, 2 or more steps); remove stages, "
                             f"or use method progressive")
        if self.method == "reflow":
            check_pairs(self.pairs)
            if self.prediction not in (None, "flow"):
                raise ValueError(f"prediction: a reflowed student is a flow (its velocity eps - x0 on the straight "
                                 f"path); use flow or null, not {self.prediction}")
        elif self.pairs:
            raise ValueError(f"pairs: only method reflow draws pairs from the teacher; method {self.method} does not "
                             f"(remove the section)")
        require(self.prediction is None or self.prediction in PREDICTION_TYPES, "prediction",
                f"one of {', '.join(PREDICTION_TYPES)} or null", self.prediction)
        if self.method == "progressive" and self.prediction not in (None, *STUDENT_PREDICTIONS):
            raise ValueError(f"prediction: a progressive-distillation student predicts "
                             f"{' or '.join(STUDENT_PREDICTIONS)} (x0 stays bounded at its first, pure-noise step; "
                             f"{self.prediction} does not)")
        w = self.guidance
        require(w is None or (isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0), "guidance",
                "a number >= 0 or null", w)
        self.loss_for(self.stages[0] if self.stages else 1)
        self.stage_train({})
        require(isinstance(self.sample, dict) and set(self.sample) <= {"n", "seed"}, "sample",
                "a mapping with n and seed", self.sample)
        n, seed = self.sample.get("n", 64), self.sample.get("seed", 0)
        require(isinstance(n, int) and n >= 1, "sample.n", "a positive integer", n)
        require(isinstance(seed, int) and seed >= 0, "sample.seed", "an integer >= 0", seed)

    def loss_for(self, steps: int):
        """The stage's loss (without its teacher): progressive distillation to `steps` steps, or consistency
        distillation."""
        if self.method == "progressive":
            return build_section("loss", ProgressiveDistillationLoss, self.loss,
                                 reserved={"steps": "set by stages"}, steps=steps)
        if self.method == "reflow":
            return build_section("loss", ReflowLoss, self.loss)
        return build_section("loss", ConsistencyDistillationLoss, self.loss)

    def stage_train(self, teacher_train: dict) -> TrainConfig:
        """A stage's training settings: STAGE_TRAIN, how the teacher ran (batch, device, precision, seed), the train
        section."""
        inherited = {k: v for k, v in (teacher_train or {}).items() if k in INHERITED_TRAIN}
        return build_section("train", TrainConfig, {**STAGE_TRAIN, **inherited, **self.train},
                             reserved={"use_labels": "set by the teacher's class_cond"})

    def as_dict(self) -> dict:
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}


def check_stages(stages) -> list:
    """The students' step counts, each half the one before (progressive distillation's stages)."""
    require(isinstance(stages, (list, tuple)) and len(stages) >= 1, "stages",
            "a list of step counts, each half the one before (e.g. [32, 16, 8, 4, 2, 1])", stages)
    for n in stages:
        require(isinstance(n, int) and not isinstance(n, bool) and n >= 1, "stages", "positive integers", stages)
    for a, b in zip(stages, stages[1:]):
        if a != 2 * b:
            raise ValueError(f"stages: each stage's student takes half its teacher's steps ({a} -> {a // 2 or 1}), "
                             f"got {a} -> {b} in {list(stages)}")
    return list(stages)


def weights_digest(folder: Path) -> str:
    """A short hash of a checkpoint's EMA weights: the teacher's identity in a student's record."""
    return hashlib.sha256((Path(folder) / EMA_WEIGHTS).read_bytes()).hexdigest()[:16]


@dataclass
class Teacher:
    """The model distilled: the loaded model (EMA weights), its data set and where it came from."""
    model: object  # models.LoadedModel
    ds: ArrayDataset
    identity: dict

    @property
    def denoiser(self) -> Denoiser:
        return self.model.denoiser


def open_teacher(path, device: str) -> Teacher:
    """The teacher, refused in one line unless it is a diffusion model trained by denoisekit on data that is still
    the same."""
    from ..models import load_model
    try:
        model = load_model(path, device=device)
    except (ValueError, OSError) as e:
        raise ValueError(f"--teacher: {e}") from None
    model.require_denoiser("--teacher")
    model.require_pixels("--teacher")
    if getattr(model.denoiser, "consistency", False):
        raise ValueError(f"--teacher: {path} is a consistency model; distill from a diffusion model (a denoiser "
                         f"trained by 'denoisekit train' or an earlier distillation stage)")
    run, data = model.record.get("run"), model.record.get("data")
    if not isinstance(run, dict) or not isinstance(data, dict) or not run.get("data"):
        raise ValueError(f"--teacher: {model.folder} records no training data set; it was not made by "
                         f"'denoisekit train'")
    try:
        ds = load_dataset(run["data"], image_size=run.get("image_size"), channels=run.get("channels"))
    except (ValueError, OSError) as e:
        raise ValueError(f"--teacher: its data set {run['data']!r} cannot be loaded ({e})") from None
    fingerprint = data_fingerprint(ds)
    if data.get("fingerprint") not in (None, fingerprint):
        raise ValueError(f"--teacher: its data set {run['data']!r} has changed since the teacher was trained "
                         f"(fingerprint {fingerprint}, recorded {data['fingerprint']})")
    state = load_state(model.folder) or {}
    identity = {"checkpoint": str(model.folder), "step": state.get("step"), "weights": weights_digest(model.folder)}
    return Teacher(model, ds, identity)


def student_from(teacher: Denoiser, prediction: str, consistency: bool) -> Denoiser:
    """A copy of the teacher's network in a denoiser of the student's prediction type (and consistency boundary);
    a learned-variance teacher's variance outputs are dropped for a consistency student."""
    config = copy.deepcopy(teacher.config())
    config.update(prediction=prediction, consistency=consistency)
    drop_variance = consistency and config.get("learned_variance")
    if drop_variance:
        config["learned_variance"] = False
        net = config["net"]
        key = "out_channels" if "out_channels" in net else "out_dim"
        net[key] //= 2
    student = build(config)
    state = teacher.state_dict()
    own = student.state_dict()
    for k, v in state.items():  # the variance half of the last layer goes (it comes after the prediction)
        if k in own and own[k].shape != v.shape and v.ndim >= 1 and v.shape[0] == 2 * own[k].shape[0]:
            state[k] = v[: own[k].shape[0]]
    student.load_state_dict(state)
    return student.to(next(teacher.parameters()).device)


def student_prediction(dc: DistillConfig, teacher: Denoiser) -> str:
    """The student's prediction type: as asked, else the teacher's where it suits the method, else v."""
    if dc.prediction is not None:
        return dc.prediction
    if dc.method == "reflow":
        return "flow"
    if dc.method == "progressive" and teacher.prediction not in STUDENT_PREDICTIONS:
        return "v"
    return teacher.prediction


@dataclass
class Stage:
    """One stage: its index (1-based), its folder, the student's sampling steps and the sampling it records."""
    index: int
    folder: Path
    steps: int
    sampling: dict

    def describe(self, total: int, method: str) -> str:
        if method == "progressive":
            return (f"stage {self.index}/{total}: a {self.steps}-step student from the {2 * self.steps}-step teacher "
                    f"-> {self.folder}")
        if method == "reflow":
            return f"reflow: a flow trained on the teacher's couplings (z, x) -> {self.folder}"
        return f"consistency distillation: the consistency function f from the teacher -> {self.folder}"


def plan_stages(dc: DistillConfig, out: Path) -> list[Stage]:
    """The stages' folders and what each student's `denoisekit sample` uses by default."""
    if dc.method == "consistency":
        return [Stage(1, out / "stages" / "01-consistency", 1, copy.deepcopy(CONSISTENCY_FALLBACK))]
    if dc.method == "reflow":
        return [Stage(1, out / "stages" / "01-reflow", REFLOW_SAMPLING["steps"], copy.deepcopy(REFLOW_SAMPLING))]
    return [Stage(i + 1, out / "stages" / f"{i + 1:02d}-{n}-steps", n,
                  {"sampler": "ddim", "steps": n, "schedule": "trailing", "options": {}})
            for i, n in enumerate(dc.stages)]


def stage_done(stage: Stage, steps: int, origin: dict) -> bool:
    """Whether the stage's run folder holds its final checkpoint, distilled from the same first teacher `origin`."""
    from ..train.checkpoint import find_checkpoint, load_config
    try:
        folder = find_checkpoint(stage.folder)
        state, config = load_state(folder) or {}, load_config(folder)
    except (ValueError, OSError):
        return False
    old = ((config.get("distill") or {}).get("origin") or {}).get("weights")
    if old != origin["weights"]:
        raise IncompatibleRun(f"resume: {stage.folder} was distilled from another teacher (weights {old}, now "
                              f"{origin['weights']}); use another --out, or --no-resume")
    return int(state.get("step", -1)) >= steps


def clear_distillation(out: Path) -> list[str]:
    """--no-resume: remove what `distill` wrote into `out` (its record and stage folders), nothing else."""
    return remove_outputs(out, ("stages", RECORD, PAIRS))


@dataclass
class Distillation:
    """Everything checked before any work: config, teacher, data, the first student and each stage's settings."""
    dc: DistillConfig
    teacher: Teacher
    out: Path
    tc: TrainConfig
    stages: list

    def summary(self) -> str:
        t = self.teacher
        n = sum(p.numel() for p in t.denoiser.parameters())
        what = (f"progressive distillation {2 * self.dc.stages[0]} -> {self.dc.stages[-1]} steps in "
                f"{len(self.stages)} stages" if self.dc.method == "progressive" else
                f"reflow on {check_pairs(self.dc.pairs)['n']} couplings" if self.dc.method == "reflow" else
                "consistency distillation")
        return (f"{what} of {t.model.folder} ({n:,} parameters, {t.denoiser.prediction}-prediction, "
                f"{type(t.denoiser.process).__name__}) on {t.ds.name!r} ({len(t.ds)} examples): {self.tc.steps} steps "
                f"of batch {self.tc.batch_size} per stage, lr {self.tc.lr:g} ({self.tc.lr_schedule})")


def prepare_distillation(dc: DistillConfig, teacher_path, out) -> Distillation:
    """The teacher opened and the student's set-up checked (nothing written)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out: {out} is a file; expected a folder for the stages")
    if Path(teacher_path).resolve() == out.resolve():
        raise ValueError("--out: must be a new folder, not the teacher's run")
    if (out / "checkpoints").exists():
        raise ValueError(f"--out: {out} holds a training run (checkpoints/); name a new folder for the stages")
    tc = dc.stage_train({})
    device = str(resolve_device(tc.device)) if tc.device == "auto" else tc.device
    teacher = open_teacher(teacher_path, device)
    tc = dc.stage_train(teacher.model.record.get("train"))
    if tc.batch_size > len(teacher.ds):
        raise ValueError(f"train.batch_size: {tc.batch_size} is larger than the data set ({len(teacher.ds)} examples)")
    if dc.method == "reflow":
        if not isinstance(teacher.denoiser.process, FlowProcess):
            raise ValueError(f"--teacher: reflow straightens a flow; it needs a flow-matching teacher (objective "
                             f"flow), not one of process {type(teacher.denoiser.process).__name__}")
        n = check_pairs(dc.pairs)["n"]
        if tc.batch_size > n:
            raise ValueError(f"train.batch_size: {tc.batch_size} is larger than the {n} pairs (pairs.n)")
    if dc.guidance is not None:
        teacher.model.guided(w=dc.guidance)  # one line when the teacher has no unconditional branch
    prediction = student_prediction(dc, teacher.denoiser)
    try:
        student_from(teacher.denoiser, prediction, dc.method == "consistency")
    except (ValueError, RuntimeError, KeyError, TypeError) as e:
        raise ValueError(f"prediction: a {prediction}-prediction student cannot copy the teacher "
                         f"({str(e).splitlines()[0]})") from None
    return Distillation(dc, teacher, out, tc, plan_stages(dc, out))


def distill(prep: Distillation, resume: bool = True) -> Path:
    """Train the stages in turn (finished ones are skipped, an interrupted one resumes); returns the last stage's
    folder, whose student `denoisekit sample OUT` uses."""
    dc, out, tc = prep.dc, prep.out, prep.tc
    if not resume:
        removed = clear_distillation(out)
        if removed:
            print(f"--no-resume: removed the previous distillation's {', '.join(removed)} from {out}")
    out.mkdir(parents=True, exist_ok=True)
    record = {"distill": dc.as_dict(), "teacher": prep.teacher.identity}
    atomic_save(out / RECORD, lambda p: Path(p).write_text(yaml.safe_dump(record, sort_keys=False)))
    print(f"distilling: {prep.summary()}")
    teacher = prep.teacher
    for stage in prep.stages:
        if stage_done(stage, tc.steps, prep.teacher.identity):
            print(f"{stage.describe(len(prep.stages), dc.method)}: done")
        else:
            print(stage.describe(len(prep.stages), dc.method))
            train_stage(prep, teacher, stage, resume)
        if stage.index < len(prep.stages):
            teacher = open_teacher(stage.folder, str(next(teacher.denoiser.parameters()).device))
    return prep.stages[-1].folder


def train_stage(prep: Distillation, teacher: Teacher, stage: Stage, resume: bool) -> None:
    """One stage: the student copied from the teacher, trained by the stage's loss in its own run folder."""
    dc, tc = prep.dc, prep.tc
    prediction = student_prediction(dc, teacher.denoiser)
    student = student_from(teacher.denoiser, prediction, dc.method == "consistency")
    guide = teacher.model.guided(w=dc.guidance)[0] if dc.guidance is not None else teacher.denoiser
    reflow = dc.method == "reflow"
    loss = dc.loss_for(stage.steps) if reflow else dc.loss_for(stage.steps).with_teacher(guide)
    first = prep.teacher
    run = copy.deepcopy(first.model.record.get("run") or {})
    run.update(prediction=prediction, consistency=dc.method == "consistency", sample={**run.get("sample", {}),
                                                                                      **stage.sampling})
    record = {"loss": loss.config(), "run": run, "data": first.model.record["data"],
              "distill": {"method": dc.method, "stage": stage.index, "stages": len(prep.stages),
                          "student_steps": stage.steps, "guidance": dc.guidance, "sampling": stage.sampling,
                          "teacher": teacher.identity, "origin": first.identity}}
    ds, class_cond = first.ds, bool(teacher.model.num_classes)
    tc = dataclasses.replace(tc, use_labels=class_cond)
    if reflow:  # the teacher's couplings, drawn once; their noise reaches the loss through the conditioning
        record["distill"]["pairs"] = check_pairs(dc.pairs)
        ds = teacher_pairs(teacher.model, ds, check_pairs(dc.pairs), prep.out, teacher.identity["weights"],
                           guided=guide if dc.guidance is not None else None, progress=tc.progress)
        tc = dataclasses.replace(tc, use_labels=True)

    def sample_fn(ema_model, step):
        labels = balanced_labels(dc.sample.get("n", 64), teacher.model.num_classes, next(ema_model.parameters()).device)
        s = stage.sampling
        x = generate(ema_model, dc.sample.get("n", 64), tuple(ds.x.shape[1:]), seed=dc.sample.get("seed", 0),
                     steps=s["steps"], sampler=s["sampler"], schedule=s["schedule"], labels=labels)
        save_picture(x, stage.folder / "samples" / f"step-{step:07d}.png", scale=2 if ds.is_image else 1)

    trainer = Trainer(student, loss, ds, stage.folder, tc, config=record, sample_fn=sample_fn,
                      label=f"stage {stage.index}/{len(prep.stages)}")
    base = compatibility_check(student, loss, record, stage.folder)

    def check(config: dict) -> None:
        base(config)
        old = (config.get("distill") or {}).get("teacher", {}).get("weights")
        if old != teacher.identity["weights"]:
            raise IncompatibleRun(f"resume: {stage.folder} was distilled from another teacher (weights {old}, now "
                                  f"{teacher.identity['weights']}); use another --out, or --no-resume")
    start_run(trainer, {"distill": dc.as_dict(), "stage": record["distill"]}, stage.folder, resume, check)
    trainer.train()
