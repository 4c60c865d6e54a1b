"""Train a few steps (alone, or as one rank under torchrun) and save the weights: used by test_train.py. Arguments:
the run folder, the global batch, and optionally the step to stop at (a checkpoint is written every 2 steps; a run
folder with a checkpoint is resumed, whatever number of processes wrote it). FSDP=1 in the environment shards the
model (train.fsdp)."""
import os
import sys

import torch

from denoisekit import Denoiser, DiscreteVP, SimpleLoss, TrainConfig, Trainer, make_toy
from denoisekit.nets import MLP
from denoisekit.train.sharding import full_weights, local_fraction

out, batch = sys.argv[1], int(sys.argv[2])
until = int(sys.argv[3]) if len(sys.argv) > 3 else None
torch.manual_seed(0)
denoiser = Denoiser(MLP(hidden=32), DiscreteVP(), "eps")
cfg = TrainConfig(steps=4, batch_size=batch, lr=1e-2, warmup_steps=0, progress=False, tensorboard=False,
                  checkpoint_every=2, ema_decay=0.5, device="cpu",
                  fsdp=os.environ.get("FSDP") == "1")  # gloo: ranks share no GPU
trainer = Trainer(denoiser, SimpleLoss(), make_toy("moons", 512), out, cfg)
trainer.resume()
trainer.train(until=until)
share = local_fraction(denoiser)  # of this rank
model, ema = ((full_weights(denoiser), full_weights(trainer.ema.model)) if trainer.sharded
              else (denoiser.state_dict(), trainer.ema.model.state_dict()))
if trainer.rank == 0 and until is None:
    torch.save({"model": model, "ema": ema, "world": trainer.world, "sharded": trainer.sharded, "share": share},
               f"{out}/weights.pt")
