"""Forward processes: the contract (`Process`), the scalar-Gaussian family (`NoiseProcess`), DDPM's discrete VP with its
beta schedules, the score SDEs (VP, sub-VP, VE), NCSN's noise ladder and the flow-matching path, critically-damped Langevin diffusion; `PROCESSES`, the one registry by name."""
from .base import NoiseProcess, Process
from .cld import CLDProcess
from .continuous import ContinuousProcess, SubVPSDE, VESDE, VPSDE
from .discrete import DiscreteVP
from .flow import FlowProcess
from .ladder import NoiseLadder
from .schedules import cosine_alpha_bar, cosine_betas, linear_betas, make_betas, rescale_zero_terminal_snr

# The run config's process.kind: DDPM's discrete VP (Ho et al. 2020), NCSN's noise ladder (Song & Ermon 2019) and the
# score SDEs' VP, sub-VP and VE (Song et al. 2021), flow matching's straight path (Lipman et al. 2023) and
# critically-damped Langevin diffusion over (x, v) (Dockhorn et al. 2022).
PROCESSES = {"ddpm": DiscreteVP, "ncsn": NoiseLadder, "vp": VPSDE, "subvp": SubVPSDE, "ve": VESDE,
             "flow": FlowProcess, "cld": CLDProcess}

__all__ = ["PROCESSES", "CLDProcess", "ContinuousProcess", "DiscreteVP", "FlowProcess", "NoiseLadder", "NoiseProcess", "Process", "SubVPSDE",
           "VESDE", "VPSDE", "cosine_alpha_bar", "cosine_betas", "linear_betas", "make_betas",
           "rescale_zero_terminal_snr"]
