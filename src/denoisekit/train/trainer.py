"""A training loop that knows no diffusion math: data order, optimizer, EMA, checkpoints, logging, DDP."""
from __future__ import annotations

import copy
import csv
import os
import signal
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..utils import training_precision
from .checkpoint import (checkpoint_candidates, clean_interrupted_writes, find_checkpoint, load_config, load_matching,
                         load_state, load_tensors, load_weights, numpy_rng_from_plain, numpy_rng_to_plain,
                         save_checkpoint)
from .config import TrainConfig, lr_at
from .distributed import barrier, init_distributed
from .ema import EMA
from .errors import IncompatibleRun, NonFiniteError, TrainingDiverged, TrainingInterrupted  # noqa: F401 (re-exported)
from .logs import open_logs, truncate_log
from .order import DataOrder
from .phases import SINGLE, _LossModule, backward_in_parts
from .posthoc_ema import PowerEMA
from .sharding import ShardedLossModule, full_optimizer_state, full_weights, load_full_optimizer_state, shard, whole
from .signals import catch_signals

POWER_EMA = "power_ema.safetensors"  # the post-hoc EMA profiles' running averages, in a checkpoint

MAX_CONSECUTIVE_SKIPS = 100  # under nonfinite='skip', this many bad steps in a row stop the run all the same


def resolve_device(name: str) -> torch.device:
    """'auto' is CUDA when present; under torchrun each rank takes the GPU of its LOCAL_RANK."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


class Trainer:
    """`Trainer(model, loss_fn, dataset, run_dir, cfg).train()`; loss_fn(model, x, cond, generators) -> per-example loss.

    A loss may also name the terms it sums (`terms(...)` and `term_names`: logged as columns of metrics.csv and as
    TensorBoard scalars), act after each optimizer step (`after_step(model, step)`: a target network's EMA), say
    training has diverged (`diverged(terms) -> reason or None`), and train several parts of the model, each with its
    own optimizer (`parts(model) -> {name: (module, lr scale)}` and `phases`, a sequence of `Phase`: a GAN's players).

    `attachments` ({safetensors file name: tensors}) are written into every checkpoint beside the weights (a latent
    model's first stage). Data order and per-example noise are functions of (seed, step, example index) alone, so resuming continues
    exactly, and N ranks with batch B/N see the same examples and noise as one process with batch B.
    """

    def __init__(self, model: nn.Module, loss_fn: Callable, dataset, run_dir, cfg: TrainConfig,
                 config: Optional[dict] = None, sample_fn: Optional[Callable] = None,
                 eval_fn: Optional[Callable] = None, label: str = "training", attachments: Optional[dict] = None):
        self.cfg = cfg
        self.label = label  # the progress bar's name (a distillation's stage)
        self.device = resolve_device(cfg.device)
        self.rank, self.world = init_distributed(self.device)
        if cfg.batch_size % (self.world * cfg.grad_accum):
            raise ValueError(f"batch_size: {cfg.batch_size} is not divisible by the {self.world} ranks x "
                             f"{cfg.grad_accum} micro-batches (grad_accum)")
        if len(dataset) < cfg.batch_size:
            raise ValueError(f"batch_size: {cfg.batch_size} is larger than the data set ({len(dataset)} examples)")
        self.run_dir = Path(run_dir)
        self.model = model.to(self.device)
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.precision = training_precision(cfg.amp, self.device)  # 'bf16' or 'fp32'
        self.loss_fn = loss_fn
        self.term_names = tuple(getattr(loss_fn, "term_names", ()))  # logged beside the loss
        self.order = DataOrder(dataset.x, cfg.batch_size, self.rank, self.world, cfg.seed, cfg.steps,
                               cfg.data_workers, pin=self.device.type == "cuda")
        self.data_cond = dataset.conditioning if cfg.use_labels else None  # idx -> the examples' conditioning
        if cfg.use_labels and dataset.conditioning(slice(0, 1)) is None:
            raise ValueError("use_labels: the data set has no labels")
        self.config = config or {}
        self.attachments = attachments or {}  # {safetensors file name: tensors} written into every checkpoint
        self.sample_fn = sample_fn
        self.eval_fn = eval_fn  # eval_fn(ema_model, step) -> {name: number}, written to eval.csv and TensorBoard
        torch.manual_seed(cfg.seed + self.rank)
        self.ema = EMA(self.model, cfg.ema_decay, cfg.ema_warmup)
        self.power_ema = PowerEMA(self.model, cfg.ema_profiles) if cfg.ema_profiles else None
        self.phases = tuple(getattr(loss_fn, "phases", SINGLE))
        if cfg.fsdp and (hasattr(loss_fn, "parts") or self.power_ema is not None):  # refused on any world size
            raise ValueError("train.fsdp: shards a model trained by one optimizer with a plain EMA; this run has "
                             + ("several parts (a GAN's players)" if hasattr(loss_fn, "parts")
                                else "post-hoc EMA profiles (ema_profiles)") + "; set train.fsdp: false")
        self.sharded = cfg.fsdp and self.world > 1  # one process holds the whole model: nothing to shard
        if self.sharded:
            self.template = copy.deepcopy(self.ema.model).cpu() if self.rank == 0 else None  # rank 0 samples
            shard(self.model)
            shard(self.ema.model)
        parts = loss_fn.parts(self.model) if hasattr(loss_fn, "parts") else {"model": (self.model, 1.0)}
        self.lr_scales = {name: float(scale) for name, (_, scale) in parts.items()}
        self.part_params = {name: [p for p in module.parameters() if p.requires_grad]
                            for name, (module, _) in parts.items()}
        fused = {"fused": True} if self.device.type == "cuda" else {}  # one kernel for all parameters' updates
        self.opts = {name: torch.optim.AdamW(params, lr=cfg.lr * self.lr_scales[name], betas=cfg.betas,
                                             weight_decay=cfg.weight_decay, **fused)
                     for name, params in self.part_params.items()}
        self.opt = next(iter(self.opts.values()))  # the optimizer of a single-part model
        self.step = 0
        self.saved_step: Optional[int] = None  # the step of the last checkpoint written or resumed from
        self.skipped = self._skips_in_a_row = 0
        self.last_terms: dict = {}
        if cfg.compile:  # the network alone, in place (its weights keep their names): the loss's per-example
            getattr(self.model, "net", self.model).compile()  # generator lists are not traced
        module = (ShardedLossModule if self.sharded else _LossModule)(self.model, loss_fn)
        if self.world > 1 and not self.sharded:  # a phase that trains one part leaves the others' parameters unused
            module = nn.parallel.DistributedDataParallel(module, device_ids=[self.device.index]
                                                         if self.device.type == "cuda" else None,
                                                         find_unused_parameters=len(self.opts) > 1)
        self.module = module

    # --- data order (train/order.py) -------------------------------------------------------------------------
    def batch_indices(self, step: int) -> torch.Tensor:
        return self.order.indices(step)

    # --- checkpoints ------------------------------------------------------------------------------------------
    def whole_ema(self) -> Optional[nn.Module]:
        """The EMA model to sample and evaluate on rank 0; sharded, every rank must call it (None off rank 0)."""
        if not self.sharded:
            return self.ema.model
        weights = full_weights(self.ema.model)
        return whole(self.template, weights, self.device) if self.rank == 0 else None

    def save(self) -> Optional[Path]:
        """A checkpoint of whole tensors, written by rank 0 (sharded, every rank must call it: a gather)."""
        model, ema = self.model, self.ema.model
        if self.sharded:
            model, ema, opt_state = full_weights(model), full_weights(ema), full_optimizer_state(model, self.opt)
        if self.rank != 0:
            return None
        state = {"step": self.step, "ema_updates": self.ema.updates,
                 "torch_rng": torch.get_rng_state(), "numpy_rng": numpy_rng_to_plain(np.random.get_state()),
                 "train_config": asdict(self.cfg)}
        if len(self.opts) == 1:
            state["optimizer"] = opt_state if self.sharded else self.opt.state_dict()
        else:
            state["optimizers"] = {name: opt.state_dict() for name, opt in self.opts.items()}
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        if hasattr(self.loss_fn, "state_dict"):  # a stateful loss (an importance sampler's history of L_t)
            state["loss_state"] = self.loss_fn.state_dict()
        self.saved_step = self.step
        config = {**self.config, "train": asdict(self.cfg),
                  "trained_in": {"device": self.device.type, "precision": self.precision}}
        if hasattr(self.model, "config"):  # rebuildable with denoisekit.config.build(config["model"])
            config["model"] = self.model.config()
        extra = {**self.attachments, **({POWER_EMA: self.power_ema.state_tensors()} if self.power_ema is not None
                                        else {})}
        return save_checkpoint(self.run_dir / "checkpoints" / f"step-{self.step:07d}", model, ema, config, state,
                               extra)

    def resume(self, path=None, check: Optional[Callable[[dict], None]] = None) -> bool:
        """Continue from the latest checkpoint of this run (or `path`); returns whether one was found.

        A damaged latest checkpoint (truncated weights, missing EMA, unreadable state) falls back to the previous good
        one, with a message; `check(config)` may refuse a checkpoint's recorded config (raising IncompatibleRun)."""
        if path is not None:
            self._load(find_checkpoint(path), check)
            return True
        for sub in ("checkpoints", "samples", "."):
            for done in clean_interrupted_writes(self.run_dir / sub):
                tqdm.write(f"resume: tidied an interrupted save in {self.run_dir / sub}: {done}")
        problems = []
        for folder in checkpoint_candidates(self.run_dir):
            try:
                self._load(folder, check)
            except IncompatibleRun:
                raise
            except (ValueError, OSError, KeyError, TypeError, RuntimeError) as e:
                problems.append(f"{folder.name} is unusable ({str(e).splitlines()[0] if str(e) else type(e).__name__})")
                continue
            if problems:
                tqdm.write(f"resume: {'; '.join(problems)}; resuming from {folder.name} instead")
            return True
        if problems:
            raise ValueError(f"resume: no usable checkpoint in {self.run_dir / 'checkpoints'}: {problems[0]}; "
                             f"start afresh with --no-resume")
        return False

    def _load(self, folder: Path, check=None) -> None:
        """Read every part of a checkpoint first, then apply it: a damaged one changes nothing."""
        config = load_config(folder)
        if check is not None:
            check(config)
        weights = load_weights(folder, ema=False)
        ema_weights = load_weights(folder, ema=True, require_ema=True)
        state = load_state(folder)
        if state is None:
            raise FileNotFoundError(f"checkpoint: {folder} has no training state (state.pt)")
        profiles = load_tensors(folder, POWER_EMA) if self.power_ema is not None else None
        step, updates, torch_rng = int(state["step"]), int(state["ema_updates"]), state["torch_rng"]
        numpy_rng = numpy_rng_from_plain(state["numpy_rng"])
        if hasattr(self.loss_fn, "load_state_dict"):
            self.loss_fn.load_state_dict(state.get("loss_state") or {})
        load_matching(self.model, weights, folder, sharded=self.sharded)
        load_matching(self.ema.model, ema_weights, folder, sharded=self.sharded)
        if profiles is not None:
            self.power_ema.load_state_tensors(profiles, folder / POWER_EMA)
        if len(self.opts) == 1:
            if self.sharded:
                load_full_optimizer_state(self.model, self.opt, state["optimizer"])
            else:
                self.opt.load_state_dict(state["optimizer"])
        else:
            saved = state.get("optimizers") or {}
            if set(saved) != set(self.opts):
                raise ValueError(f"checkpoint: {folder} holds optimizers for {sorted(saved) or 'one model'}, this "
                                 f"loss trains {sorted(self.opts)}")
            for name, opt in self.opts.items():
                opt.load_state_dict(saved[name])
        self.step, self.ema.updates, self.saved_step = step, updates, step
        torch.set_rng_state(torch_rng)
        np.random.set_state(numpy_rng)
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])

    def run_eval(self, tb=None, ema: Optional[nn.Module] = None) -> Optional[dict]:
        """Call eval_fn on the EMA model; append its numbers to eval.csv and the TensorBoard scalars under eval/."""
        if self.eval_fn is None or self.rank != 0:
            return None
        metrics = {k: float(v) for k, v in self.eval_fn(self.ema.model if ema is None else ema, self.step).items()
                   if isinstance(v, (int, float))}
        path = self.run_dir / "eval.csv"
        new = not path.exists()
        with open(path, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["step", *metrics])
            writer.writerow([self.step, *metrics.values()])
        if tb is not None:
            for k, v in metrics.items():
                tb.add_scalar(f"eval/{k}", v, self.step)
        return metrics

    # --- loop -------------------------------------------------------------------------------------------------
    def _loggers(self):
        if self.rank != 0:
            return None, None
        return open_logs(self.run_dir, self.step, ["step", "loss", "lr", "grad_norm", "images_per_s", *self.term_names],
                         self.cfg.tensorboard)

    def train_step(self) -> tuple[float, float]:
        """One training step, an optimizer step per phase due; returns (loss, gradient norm before clipping), summed
        over the phases; the named terms go to self.last_terms."""
        idx = self.order.indices(self.step)
        x = self.order.batch(self.step, idx).to(self.device, non_blocking=True)
        if x.dim() == 4 and self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        cond = self.data_cond(idx).to(self.device) if self.data_cond is not None else None
        lr = lr_at(self.cfg, self.step)
        for name, opt in self.opts.items():
            for group in opt.param_groups:
                group["lr"] = lr * self.lr_scales[name]
        self.model.train()
        generators = self.order.generators(self.step)  # the phases draw from them in turn
        total_loss, total_norm, self.last_terms = 0.0, 0.0, {}
        for phase in self.phases:
            if self.step % phase.every:
                continue
            self.model.zero_grad(set_to_none=True)
            loss, terms = backward_in_parts(self.module, x, cond, generators,
                                            phase.name if self.phases is not SINGLE else None, self.cfg.grad_accum,
                                            self.world, self.device.type, self.precision == "bf16")
            self.last_terms.update({k: terms[k] for k in self.term_names if k in terms})
            clip = self.cfg.grad_clip if self.cfg.grad_clip is not None else float("inf")
            grad_norm = nn.utils.clip_grad_norm_(self.part_params[phase.part], clip)
            grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm  # FSDP's DTensor
            if not bool(torch.isfinite(torch.stack([loss.detach().float(), grad_norm.float()])).all()):  # one sync
                return self._nonfinite(loss.detach(), grad_norm.detach())
            self.opts[phase.part].step()
            total_loss, total_norm = total_loss + loss.detach(), total_norm + grad_norm.detach()
        self.model.zero_grad(set_to_none=True)
        self.ema.update(self.model)
        self.step += 1
        if self.power_ema is not None:
            self.power_ema.update(self.model, self.step)
        if hasattr(self.loss_fn, "after_step"):
            self.loss_fn.after_step(self.model, self.step)
        if hasattr(self.loss_fn, "diverged"):
            reason = self.loss_fn.diverged(self.last_terms)
            if reason:
                kept = (f"the last checkpoint, step-{self.saved_step:07d}, is kept" if self.saved_step is not None
                        else "no checkpoint had been saved yet")
                raise TrainingDiverged(f"train: step {self.step}: {reason}; stopped ({kept})")
        self._skips_in_a_row = 0
        return total_loss, total_norm

    def _nonfinite(self, loss: torch.Tensor, grad_norm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A NaN/inf loss or gradient: the update is never applied; stop (the default) or skip the step."""
        bad = [k for k, v in self.last_terms.items() if not bool(torch.isfinite(v).all())]
        what = (f"step {self.step + 1}: the loss or its gradient is not finite (loss {float(loss):.4g}, gradient "
                f"norm {float(grad_norm):.4g}{'; not finite: ' + ', '.join(bad) if bad else ''})")
        kept = (f"the last checkpoint, step-{self.saved_step:07d}, is kept" if self.saved_step is not None
                else "no checkpoint had been saved yet")
        self.model.zero_grad(set_to_none=True)
        if self.cfg.nonfinite == "stop":
            raise NonFiniteError(f"train: {what}; stopped before applying it ({kept}). Lower train.lr (now "
                                 f"{self.cfg.lr:g}) or set train.nonfinite=skip to skip such steps")
        self.skipped += 1
        self._skips_in_a_row += 1
        if self._skips_in_a_row >= MAX_CONSECUTIVE_SKIPS:
            raise NonFiniteError(f"train: {what}, the {MAX_CONSECUTIVE_SKIPS}th non-finite step in a row; stopped "
                                 f"({kept}). Lower train.lr (now {self.cfg.lr:g}) or check the data")
        self.step += 1
        if self.power_ema is not None:  # theta_t = theta_{t-1}: the profiles' step weights stay exact
            self.power_ema.update(self.model, self.step)
        return loss, grad_norm

    def train(self, until: Optional[int] = None) -> nn.Module:
        """Run until cfg.steps (or stop early at step `until`, as an interruption would); returns the EMA model.

        Ctrl-C or SIGTERM finishes the current step, saves a checkpoint and raises TrainingInterrupted (a second
        Ctrl-C aborts at once)."""
        cfg = self.cfg
        last = min(cfg.steps, until) if until is not None else cfg.steps
        csv_log, tb = self._loggers()
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not cfg.progress or self.rank != 0, desc=self.label)
        losses, t0, n0 = [], time.perf_counter(), self.step
        term_sums: dict = {}
        stop: list[str] = []
        previous = catch_signals(stop)
        try:
            while self.step < last:
                skipped = self.skipped
                loss, grad_norm = self.train_step()
                if self.skipped == skipped:
                    losses.append(loss)
                    for k, v in self.last_terms.items():
                        term_sums.setdefault(k, []).append(v)
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    mean_loss = float(torch.stack(losses).mean()) if losses else float("nan")
                    means = [float(torch.stack(term_sums[k]).mean()) if term_sums.get(k) else float("nan")
                             for k in self.term_names]
                    ips = (self.step - n0) * cfg.batch_size / (time.perf_counter() - t0)
                    losses, t0, n0, term_sums = [], time.perf_counter(), self.step, {}
                    bar.set_postfix(loss=f"{mean_loss:.4f}", img_s=f"{ips:.0f}")
                    if csv_log is not None:
                        csv_log[1].writerow([self.step, mean_loss, lr_at(cfg, self.step - 1), float(grad_norm), ips,
                                             *means])
                        csv_log[0].flush()
                    if tb is not None:
                        tb.add_scalar("loss", mean_loss, self.step)
                        tb.add_scalar("lr", lr_at(cfg, self.step - 1), self.step)
                        tb.add_scalar("images_per_s", ips, self.step)
                        for k, v in zip(self.term_names, means):
                            tb.add_scalar(f"loss/{k}", v, self.step)
                every = cfg.ema_snapshot_every or cfg.checkpoint_every
                if self.power_ema is not None and self.rank == 0 and (self.step % every == 0 or
                                                                      self.step == cfg.steps):
                    self.power_ema.snapshot(self.run_dir, self.step)
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                    self.save()
                    barrier(self.world)
                sample = self.sample_fn is not None and (
                    (cfg.sample_every and self.step % cfg.sample_every == 0) or self.step == cfg.steps)
                evaluate = cfg.eval_every and (self.step % cfg.eval_every == 0 or self.step == cfg.steps)
                ema = self.whole_ema() if sample or evaluate else None
                if sample and self.rank == 0:
                    self.sample_fn(ema, self.step)
                if evaluate:
                    self.run_eval(tb, ema)
                if stop:
                    if self.saved_step != self.step:
                        self.save()
                        barrier(self.world)
                    raise TrainingInterrupted(self.step, self.run_dir / "checkpoints" / f"step-{self.step:07d}")
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            bar.close()
            if csv_log is not None:
                csv_log[0].close()
            if tb is not None:
                tb.close()
        if self.skipped and self.rank == 0:
            tqdm.write(f"training skipped {self.skipped} steps with a non-finite loss or gradient (train.nonfinite=skip)")
        return self.whole_ema()
