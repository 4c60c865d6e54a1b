"""FSDP for models that do not fit one device (torch's FSDP2 `fully_shard`, Zhao et al. 2023): each of N ranks keeps 1/N
of every parameter, its gradient and its optimizer state, and gathers a block's whole weights only while the block
runs. Checkpoints hold whole tensors in the unsharded layout, so a sharded run resumes on any number of processes,
sharded or not, and its checkpoints open like any other."""
from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn

from .phases import _LossModule


def _full_options():
    from torch.distributed.checkpoint.state_dict import StateDictOptions
    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def shard(model: nn.Module) -> nn.Module:
    """fully_shard a denoiser's network in place: each block (an element of an nn.ModuleList: a U-Net's levels and
    residual blocks, an MLP's layers) as its own unit, outermost first, then the network. The network, not the
    denoiser, is the root: FSDP gathers a unit's weights in its forward hooks, and losses call the denoiser's methods."""
    from torch.distributed.fsdp import fully_shard
    net = getattr(model, "net", model)
    outside = [name for name, p in model.named_parameters() if p.requires_grad and not name.startswith("net.")]
    if net is not model and outside:
        raise ValueError(f"train.fsdp: shards a denoiser's network, and this model trains parameters outside it "
                         f"({outside[0]}); set train.fsdp: false")
    blocks = [m for lst in net.modules() if isinstance(lst, nn.ModuleList) for m in lst  # a list of lists: its items
              if not isinstance(m, (nn.ModuleList, nn.ModuleDict)) and any(p.requires_grad for p in m.parameters())]
    done: set = set()
    for block in blocks:  # a block inside a sharded block belongs to the outer unit
        if not any(block is d or any(block is m for m in d.modules()) for d in done):
            fully_shard(block)
            done.add(block)
    fully_shard(net)
    return model


def full_weights(module: nn.Module) -> dict:
    """The whole state dict on the CPU on rank 0 ({} on the others); every rank must call it (an all-gather)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict
    return get_model_state_dict(module, options=_full_options())


def load_full_weights(module: nn.Module, weights: dict) -> None:
    """Whole tensors (every rank holds them) into a sharded module: each rank keeps its shard."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
    set_model_state_dict(module, weights, options=StateDictOptions(full_state_dict=True))


def whole(template: nn.Module, weights: dict, device) -> nn.Module:
    """An unsharded model from a CPU copy (`template`) and full_weights: what rank 0 samples and evaluates."""
    module = copy.deepcopy(template)
    module.load_state_dict(weights)
    return module.to(device).eval().requires_grad_(False)


def _trainable_names(module: nn.Module) -> list:
    return [name for name, p in module.named_parameters() if p.requires_grad]


def full_optimizer_state(module: nn.Module, opt) -> dict:
    """The optimizer's whole state in torch's unsharded layout (parameters numbered in the module's order), on
    rank 0; every rank must call it."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict
    named = get_optimizer_state_dict(module, opt, options=_full_options())
    if not named:
        return {}
    index = {name: i for i, name in enumerate(_trainable_names(module))}
    return {"state": {index[k]: v for k, v in named["state"].items()},
            "param_groups": [{**g, "params": [index[k] for k in g["params"]]} for g in named["param_groups"]]}


def load_full_optimizer_state(module: nn.Module, opt, state: dict) -> None:
    """The inverse of full_optimizer_state: an unsharded optimizer state (from any run) into the sharded optimizer."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict
    names = _trainable_names(module)
    named = {"state": {names[i]: v for i, v in state["state"].items()},
             "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]]}
    set_optimizer_state_dict(module, opt, named, options=StateDictOptions(full_state_dict=True))


class ShardedLossModule(_LossModule):
    """model + loss over a sharded model; `no_sync()` holds back the gradients' reduce-scatter (accumulation)."""

    @contextlib.contextmanager
    def no_sync(self):
        self.model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            self.model.set_requires_gradient_sync(True)


def local_fraction(module: nn.Module) -> float:
    """The share of the parameters' elements this rank holds (1 unsharded, about 1/N sharded over N ranks)."""
    local = sum((p.to_local() if hasattr(p, "to_local") else p).numel() for p in module.parameters())
    return local / sum(p.numel() for p in module.parameters())
