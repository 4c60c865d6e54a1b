"""Other libraries' models in and ours out: diffusers folders open as LoadedModels (the opener is registered with
`load_model` when the package is imported)."""
from ..models import register_opener
from .diffusers import DiffusersUNet, open_diffusers

register_opener(open_diffusers)

__all__ = ["DiffusersUNet", "open_diffusers"]
