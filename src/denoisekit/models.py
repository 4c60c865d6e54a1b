"""One model opener: `load_model(path) -> LoadedModel`, everything the command line and users need of a trained model
(the denoiser, the data's shape, the classes, what can guide it, the codec, the record), so that nothing else reads a
checkpoint's raw configuration; and the noisy classifier's opener beside it."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from .conditioning import Cond
from .config import build
from .denoiser import CLDDenoiser, Denoiser
from .objectives.lsgm import LatentScoreModel
from .objectives.recovery import RecoveryEBM
from .guidance import ClassifierFreeGuidance, ClassifierGuidance, DynamicThresholding, NoisyClassifier, NoisyCLIP
from .train import find_checkpoint, load_config, load_weights
from .train.checkpoint import EMA_WEIGHTS, load_matching, load_state, load_tensors
from .utils import check_device


def _section(record: dict, name: str) -> dict:
    value = record.get(name)
    return value if isinstance(value, dict) else {}


def _shape(record: dict, folder) -> tuple:
    data = record.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("shape"), list):
        raise ValueError(f"checkpoint: {folder} records no data shape; it was not made by 'denoisekit train'")
    return tuple(data["shape"])


@dataclass
class LoadedClassifier:
    """A noisy classifier p_phi(y | x_t, t) from `denoisekit train-classifier`, with the data it knows."""
    classifier: NoisyClassifier
    shape: tuple
    num_classes: int
    record: dict
    folder: Path


@dataclass
class LoadedCLIP:
    """A noised CLIP from `denoisekit train-clip`: f(x_t, t) and g(c), its own tokenizer, the data shape it knows."""
    clip: NoisyCLIP
    tokenizer: Any
    shape: tuple
    record: dict
    folder: Path

    def guide(self, model_tokenizer, prompts) -> Callable:
        """log_prob(x_t, t, tokens) for ClassifierGuidance on a text model: the model's tokens of each prompt mapped to
        this CLIP's tokens of the same prompt (the two tokenizers differ), then the contrastive logit."""
        table = {tuple(row.tolist()): clip_row for row, clip_row in zip(model_tokenizer(prompts),
                                                                         self.tokenizer(prompts))}
        device = next(self.clip.parameters()).device

        def log_prob(x_t, t, tokens):
            try:
                ours = torch.stack([table[tuple(row.tolist())] for row in tokens.cpu()]).to(device)
            except KeyError:
                raise ValueError("--clip: guides toward the prompts it was given; a caption outside them "
                                 "reached it") from None
            return self.clip.log_prob(x_t, t, ours)
        return log_prob


@dataclass
class LoadedModel:
    """A trained model and what it was trained on.

    `num_classes`: the classes a label may name (None: no class conditioning). `guidance`: what can guide it beyond
    a noisy classifier ('cfg' when it was trained with label dropout). `codec`: the map between data and the
    denoiser's space for latent models (None: the denoiser works on the data itself). `joint`: LSGM's VAE and prior
    trained end to end (the denoiser is its prior, the codec its VAE), else None.
    """
    denoiser: Denoiser
    shape: tuple
    num_classes: Optional[int]
    guidance: tuple
    record: dict
    folder: Path
    codec: Any = None
    joint: Optional[LatentScoreModel] = None

    @property
    def process(self):
        return self.denoiser.process

    @property
    def data_shape(self) -> tuple:
        """The shape of one example in data space (the images a latent model's latents decode to)."""
        return tuple(self.record["latent"]["data_shape"]) if self.codec is not None else self.shape

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Samples in data space: a latent model's latents through its first stage's decoder, else x itself."""
        if self.codec is None:
            return x
        size = self.data_shape[-2:] if len(self.data_shape) == 3 else None
        return self.codec.from_latent(x.to(next(self.codec.parameters()).device), size)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Data in the denoiser's space: a latent model's normalised latents of x, else x itself."""
        return x if self.codec is None else self.codec.to_latent(x.to(next(self.codec.parameters()).device))

    @property
    def super_resolution(self):
        """The SuperResolution stage a cascade's second model is (its input size, augmentation levels), else None."""
        section = _section(self.record, "run").get("super_resolution")
        if section is None:
            return None
        from .cascade import SuperResolution
        try:
            return SuperResolution(**section)
        except (TypeError, ValueError) as e:
            raise ValueError(f"checkpoint: {self.folder} records a super_resolution section this version cannot read "
                             f"({e})") from None

    @property
    def text(self) -> bool:
        """Whether the model reads captions (trained with text_cond)."""
        return isinstance(self.record.get("text"), dict)

    def tokenizer(self, flag: str = "--prompt"):
        """The checkpoint's own tokenizer (a one-line error naming `flag` for a model without captions)."""
        if not self.text:
            raise ValueError(f"{flag}: {self.folder} was trained without captions (text_cond); it takes no prompt")
        from .text import TextTokenizer
        return TextTokenizer.from_dict(self.record["text"]["tokenizer"])

    def prompts(self, prompts, flag: str = "--prompt") -> Cond:
        """The conditioning of captions `prompts` (one per sample) through the checkpoint's own tokenizer."""
        return Cond(tokens=self.tokenizer(flag)(list(prompts)).to(next(self.denoiser.parameters()).device))

    def require_single_stage(self, command: str) -> None:
        """A one-line error naming `command` for a super-resolution stage (it needs a low-resolution image to work)."""
        sr = self.super_resolution
        if sr is not None:
            raise ValueError(f"{command}: {self.folder} is a super-resolution stage (it completes {sr.low_size}x"
                             f"{sr.low_size} images); use 'denoisekit upscale' on images or 'denoisekit sample "
                             f"--cascade BASE_RUN SR_RUN'")

    def require_pixels(self, command: str) -> None:
        """A one-line error naming `command` for a latent model (it works on the data itself) or a super-resolution
        stage (it works on data given a low-resolution version)."""
        self.require_single_stage(command)
        if self.codec is not None:
            raise ValueError(f"{command}: {self.folder} is a latent diffusion model (its denoiser works on the latents "
                             f"of {self.record['latent'].get('autoencoder')}), and this command works on the data "
                             f"itself; sample, eval, nll and info apply to it")

    def require_denoiser(self, command: str) -> Denoiser:
        """The denoiser, with a one-line error naming `command` for an energy model (it has none)."""
        if isinstance(self.denoiser, RecoveryEBM):
            raise ValueError(f"{command}: {self.folder} is a recovery-likelihood EBM (objective recovery), which has "
                             f"no denoiser; only sample, eval and info apply to it")
        return self.denoiser

    @property
    def data_name(self) -> Optional[str]:
        """The data set the model was trained on, as named in its run config."""
        return _section(self.record, "run").get("data")

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    def info(self) -> dict:
        """What `denoisekit info` prints: the checkpoint, its step, the network's size, the set-up."""
        state = load_state(self.folder) or {}
        model = _section(self.record, "model")
        model = _section(model, "prior") if self.joint is not None else model  # LSGM: the prior's set-up
        return {"checkpoint": str(self.folder), "step": state.get("step"),
                "parameters": sum(p.numel() for p in self.denoiser.parameters()),
                **({"latent": self.record.get("latent"),
                    "vae_parameters": sum(p.numel() for p in self.codec.parameters())} if self.codec is not None
                   else {}),
                "has_ema": (self.folder / EMA_WEIGHTS).exists(), "data": self.record.get("data"),
                "prediction": model.get("prediction"), "process": model.get("process"), "network": model.get("net"),
                "loss": self.record.get("loss"), "train": self.record.get("train"),
                "trained_in": self.record.get("trained_in"),
                **({"super_resolution": _section(self.record, "run")["super_resolution"]}
                   if self.super_resolution is not None else {}), **({"distillation": self.record["distill"]}
                                                                if isinstance(self.record.get("distill"), dict) else {})}

    def guided(self, *, w: Optional[float] = None, rescale: Optional[float] = None, interval=None,
               classifier: Optional[LoadedClassifier] = None, classifier_scale: float = 1.0,
               classifier_form: str = "score", threshold: Optional[float] = None,
               clip: Optional[LoadedCLIP] = None, clip_scale: float = 1.0, prompts=None):
        """(the denoiser wrapped for classifier-free guidance w, classifier guidance, CLIP guidance toward `prompts` and
        dynamic thresholding as asked, the number of classes labels may name): CFG needs a class- or text-conditional
        model trained with label dropout; a classifier must know the model's data shape and classes, a CLIP its
        shape."""
        denoiser, num_classes = self.denoiser, self.num_classes
        if w is not None or classifier is not None or threshold is not None or clip is not None:
            self.require_denoiser("--guidance" if w is not None else "--classifier" if classifier is not None
                                  else "--clip" if clip is not None else "--threshold")
        if w is not None:
            if not num_classes and not self.text and not isinstance(self.record.get("unclip"), dict):
                raise ValueError("--guidance: classifier-free guidance needs a class- or text-conditional model "
                                 "(class_cond or text_cond: true); this one was trained without labels")
            if "cfg" not in self.guidance:
                raise ValueError("--guidance: this model was trained without label or caption dropout (loss.p_uncond "
                                 "= 0), so it has no unconditional branch to guide with")
            denoiser = ClassifierFreeGuidance(denoiser, w, rescale=rescale or 0.0, interval=interval)
        if classifier is not None:
            if tuple(classifier.shape) != tuple(self.shape):
                raise ValueError(f"--classifier: it was trained on data of shape {list(classifier.shape)}, but the "
                                 f"model makes {list(self.shape)}")
            if num_classes and classifier.num_classes != num_classes:
                raise ValueError(f"--classifier: it knows {classifier.num_classes} classes, the model {num_classes}")
            num_classes = num_classes or classifier.num_classes
            denoiser = ClassifierGuidance(denoiser, classifier.classifier.log_prob, classifier_scale, classifier_form)
        if clip is not None:  # GLIDE's CLIP guidance: eps - s sigma grad (f(x_t, t) . g(c)), any sampler
            if tuple(clip.shape) != tuple(self.shape):
                raise ValueError(f"--clip: it was trained on data of shape {list(clip.shape)}, but the model makes "
                                 f"{list(self.shape)}")
            if not prompts:
                raise ValueError("--clip: guides toward a caption; give --prompt TEXT or --prompts FILE")
            denoiser = ClassifierGuidance(denoiser, clip.guide(self.tokenizer("--clip"), list(prompts)), clip_scale,
                                          reads="tokens")
        if threshold is not None:
            denoiser = DynamicThresholding(denoiser, threshold)
        return denoiser, num_classes


# Openers of other formats (a diffusers folder, say), tried in order before denoisekit's own checkpoints: each takes
# (path, ema=..., device=...) and returns a LoadedModel, or None when the path is not of its format.
OPENERS: list[Callable[..., Optional[LoadedModel]]] = []


def register_opener(opener: Callable[..., Optional[LoadedModel]]) -> Callable:
    """Let `load_model` (and so every command) open another format: `opener(path, ema=..., device=...)`."""
    OPENERS.append(opener)
    return opener


def load_model(path, *, ema: bool = True, device: str = "cpu") -> LoadedModel:
    """A trained diffusion model from a checkpoint or run folder (EMA weights unless `ema=False`), on `device`; or from
    any format a registered opener recognises."""
    for opener in OPENERS:
        model = opener(Path(path), ema=ema, device=device)
        if model is not None:
            return model
    try:
        return _open_checkpoint(path, ema, device)
    except FileNotFoundError as e:
        raise ValueError(f"{str(e).rstrip(')')}, or a diffusers UNet2DModel folder with its scheduler_config.json, "
                         f"or a DDPMPipeline / DDIMPipeline folder)") from None


def _open_checkpoint(path, ema: bool, device: str) -> LoadedModel:
    """A denoisekit checkpoint: the record's model rebuilt by class name, its weights matched by name."""
    folder = find_checkpoint(path)
    record = load_config(folder)
    if "model" not in record:
        raise ValueError(f"checkpoint: {folder} records no model configuration to rebuild from")
    try:
        denoiser = build(record["model"])
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise ValueError(f"checkpoint: {folder / 'config.json'} does not describe a model this version can build "
                         f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    players = denoiser if isinstance(getattr(denoiser, "generator", None), Denoiser) else None  # a DDGAN
    joint = denoiser if isinstance(denoiser, LatentScoreModel) else None  # LSGM: VAE and prior in one module
    whole = players if players is not None else joint if joint is not None else denoiser
    if players is not None:
        denoiser = players.generator
    if joint is not None:
        denoiser = joint.prior
    if not isinstance(denoiser, (Denoiser, CLDDenoiser, RecoveryEBM)):
        raise ValueError(f"checkpoint: {path} holds a {type(denoiser).__name__}, not a diffusion model"
                         f"{' (use it with --classifier)' if isinstance(denoiser, NoisyClassifier) else ''}")
    if ema and not (folder / EMA_WEIGHTS).exists():
        warnings.warn(f"checkpoint: {folder} has no EMA weights; using the raw weights", stacklevel=2)
    load_matching(whole, load_weights(folder, ema=ema), folder)
    whole.to(check_device(device)).eval()
    class_cond = bool(_section(record, "run").get("class_cond"))
    num_classes = _section(record, "data").get("num_classes") if class_cond else None
    conditional = num_classes or _section(record, "run").get("text_cond") or isinstance(record.get("unclip"), dict)
    guidance = ("cfg",) if conditional and _section(record, "loss").get("p_uncond") else ()
    if joint is not None:
        return LoadedModel(denoiser, joint.latent_shape, None, (), record, folder, joint.vae, joint)
    return LoadedModel(denoiser, _shape(record, folder), num_classes, guidance, record, folder,
                       _open_codec(record, folder, device))


def _open_codec(record: dict, folder: Path, device: str):
    """A latent model's first stage, rebuilt from its record and the weights its checkpoint carries; else None."""
    latent = record.get("latent")
    if latent is None:
        return None
    from .recipes.latent import CODEC_WEIGHTS
    if not isinstance(latent, dict) or not isinstance(latent.get("codec"), dict) or \
            not (folder / CODEC_WEIGHTS).is_file():
        raise ValueError(f"checkpoint: {folder} is a latent model without its first stage ({CODEC_WEIGHTS}); it "
                         f"cannot decode its samples")
    try:
        codec = build(latent["codec"])
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"checkpoint: {folder} records a first stage this version cannot build ({e})") from None
    load_matching(codec, load_tensors(folder, CODEC_WEIGHTS), folder / CODEC_WEIGHTS)
    return codec.to(check_device(device)).eval()


def load_denoiser(path, ema: bool = True, device: str = "cpu") -> tuple[Denoiser, dict]:
    """(the denoiser, the checkpoint's record) of `load_model`."""
    model = load_model(path, ema=ema, device=device)
    return model.denoiser, model.record


def load_classifier(path, device: str = "cpu") -> tuple[NoisyClassifier, dict]:
    """(a noisy classifier with its EMA weights, its record) from a checkpoint or run folder of `train-classifier`."""
    loaded = open_classifier(path, device)
    return loaded.classifier, loaded.record


def _open_guide(path, kind: str, flag: str, what: str, device: str):
    """(the module, record, folder) of a checkpoint holding a model of class `kind` (a guide: a noisy classifier or a
    noised CLIP), with one-line errors naming `flag`."""
    folder = find_checkpoint(path)
    record = load_config(folder)
    model = record.get("model")
    if not isinstance(model, dict) or model.get("class") != kind:
        raise ValueError(f"{flag}: {path} is not {what}")
    try:
        module = build(model)
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{flag}: {folder / 'config.json'} cannot be rebuilt ({e})") from None
    load_matching(module, load_weights(folder, ema=True), folder)
    return module.to(device).eval(), record, folder


def open_classifier(path, device: str = "cpu") -> LoadedClassifier:
    """A noisy classifier from `denoisekit train-classifier` with its data shape and classes."""
    classifier, record, folder = _open_guide(path, "NoisyClassifier", "--classifier", "a noisy classifier (one made "
                                             "by 'denoisekit train-classifier')", device)
    data = _section(record, "data")
    return LoadedClassifier(classifier, tuple(data.get("shape") or ()), data.get("num_classes"), record, folder)


def open_clip(path, device: str = "cpu") -> LoadedCLIP:
    """A noised CLIP from `denoisekit train-clip` with its tokenizer and data shape."""
    clip, record, folder = _open_guide(path, "NoisyCLIP", "--clip", "a noised CLIP (one made by 'denoisekit "
                                       "train-clip')", device)
    if not isinstance(record.get("text"), dict):
        raise ValueError(f"--clip: {folder} records no tokenizer")
    from .text import TextTokenizer
    return LoadedCLIP(clip, TextTokenizer.from_dict(record["text"]["tokenizer"]),
                      tuple(_section(record, "data").get("shape") or ()), record, folder)

