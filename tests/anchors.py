"""The anchor libraries as test/benchmark-only references: k-diffusion's samplers and diffusers' schedulers."""
from __future__ import annotations

import importlib.util
import sys
import types



def load_k_sampling():
    """k_diffusion.sampling without importing its package (whose utils need torchvision); None if not installed."""
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        return None
    if "_kd_sampling" in sys.modules:
        return sys.modules["_kd_sampling"]
    pkg = types.ModuleType("_kd")
    pkg.__path__ = list(spec.submodule_search_locations)
    utils = types.ModuleType("_kd.utils")
    utils.append_dims = lambda x, n: x[(...,) + (None,) * (n - x.ndim)]
    sys.modules["_kd"], sys.modules["_kd.utils"] = pkg, utils
    path = spec.submodule_search_locations[0] + "/sampling.py"
    sspec = importlib.util.spec_from_file_location("_kd.sampling", path)
    module = importlib.util.module_from_spec(sspec)
    try:
        sspec.loader.exec_module(module)
    except ImportError:  # torchsde or torchdiffeq missing
        return None
    sys.modules["_kd_sampling"] = module
    return module


def k_model(denoiser):
    """k-diffusion's model interface D(x, sigma) over our denoiser, in x~ = x/alpha coordinates."""
    process = denoiser.process

    def model(x, sigma, **kwargs):
        t = process.t_from_noise_level(sigma.double())
        a = process.alpha(t).to(x.dtype)
        return denoiser(x * a.reshape(-1, *[1] * (x.ndim - 1)), t, None).x0

    return model
