"""Training objectives as small callables `loss(denoiser, x0, cond, generator) -> per-example loss`: L_simple, the
bound's L_hybrid and L_vlb, score matching (DSM, SSM, ESM), the noisy classifier's cross-entropy, and the samplers of
the training time; `OBJECTIVES`, the one registry of the run config's `objective`."""
from .bound import HybridLoss, VLBLoss
from .classifier import CLIPLoss, ClassifierLoss
from .consistency import DISTANCES, ConsistencyDistillationLoss, ConsistencyTrainingLoss, TargetNetwork, distance
from .ddgan import DDGAN, DDGANLoss, fake_step, real_pair
from .recovery import LangevinChain, RecoveryEBM, RecoveryLoss, recover
from .hsm import HSMLoss
from .lsgm import LSGMLoss, LatentScoreModel, lsgm_bound
from .distillation import ProgressiveDistillationLoss, distillation_times
from .score_matching import DSMLoss, ESMLoss, SSMLoss
from .simple import FLOW_TIME_SAMPLINGS, FlowMatchingLoss, ReflowLoss, SimpleLoss, noised, regression_error
from .time_sampling import ImportanceTimes, UniformTimes

# L_simple (Ho et al. 2020), L_hybrid and L_vlb (Nichol & Dhariwal 2021), and denoising, sliced and explicit score
# matching (Vincent 2011; Song et al. 2019; Hyvarinen 2005), consistency training (Song et al. 2023; Song &
# Dhariwal 2023), denoising diffusion GANs (Xiao et al. 2022), diffusion recovery likelihood (Gao et al. 2021) and
# flow matching (Lipman et al. 2023), hybrid score matching for CLD (Dockhorn et al. 2022). LSGM's joint bound
# (Vahdat et al. 2021) trains a VAE and its latent score prior together. The distillation losses
# need a teacher: 'denoisekit distill' builds them.
OBJECTIVES = {"simple": SimpleLoss, "hybrid": HybridLoss, "vlb": VLBLoss, "dsm": DSMLoss, "ssm": SSMLoss,
              "esm": ESMLoss, "consistency": ConsistencyTrainingLoss, "ddgan": DDGANLoss,
              "recovery": RecoveryLoss, "flow": FlowMatchingLoss, "hsm": HSMLoss, "lsgm": LSGMLoss}
CONSISTENCY_OBJECTIVES = ("consistency",)  # train the consistency function f(x, s), not a denoiser's regression
ADVERSARIAL_OBJECTIVES = ("ddgan",)  # train a generator and a discriminator (Xiao et al. 2022)
ENERGY_OBJECTIVES = ("recovery",)  # train an energy network over the levels, sampled by Langevin (Gao et al. 2021)
LATENT_OBJECTIVES = ("lsgm",)  # train a VAE and a score prior on its latents end to end (Vahdat et al. 2021)
BOUND_OBJECTIVES = tuple(k for k, loss in OBJECTIVES.items() if issubclass(loss, HybridLoss))  # train through L_vlb

__all__ = ["ADVERSARIAL_OBJECTIVES", "BOUND_OBJECTIVES", "CLIPLoss", "CONSISTENCY_OBJECTIVES", "ClassifierLoss",
           "ConsistencyDistillationLoss", "ConsistencyTrainingLoss", "DDGAN", "DDGANLoss", "DISTANCES", "DSMLoss",
           "ENERGY_OBJECTIVES", "ESMLoss", "FLOW_TIME_SAMPLINGS", "FlowMatchingLoss", "HSMLoss", "HybridLoss", "ImportanceTimes", "LATENT_OBJECTIVES",
           "LSGMLoss", "LangevinChain", "LatentScoreModel", "OBJECTIVES", "ProgressiveDistillationLoss", "RecoveryEBM",
           "RecoveryLoss", "ReflowLoss",
           "SSMLoss",
           "SimpleLoss", "TargetNetwork", "UniformTimes", "VLBLoss", "distance", "distillation_times", "fake_step",
           "lsgm_bound", "noised", "real_pair", "recover", "regression_error"]
