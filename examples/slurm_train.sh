#!/bin/bash
# Multi-node training under SLURM: one torchrun per node, one rank per GPU, rendezvous on the first node.
# The global batch (train.batch_size) is split over all ranks; rank 0 writes the run folder, which must be on a file
# system every node sees. Resubmitting the same job resumes from the latest checkpoint, also with another number of
# nodes or GPUs (the data order and the noise are functions of the seed and the step, not of the world size).
#
#   sbatch --nodes=2 --gpus-per-node=4 examples/slurm_train.sh configs/demo.yaml runs/cluster
#
#SBATCH --job-name=denoisekit
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=16
#SBATCH --time=24:00:00
#SBATCH --signal=TERM@120
set -euo pipefail
config=${1:?usage: sbatch examples/slurm_train.sh CONFIG OUT}
out=${2:?usage: sbatch examples/slurm_train.sh CONFIG OUT}
gpus=${SLURM_GPUS_PER_NODE:-$(nvidia-smi -L | wc -l)}
head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
# SIGTERM (sent 120 s before the time limit) makes the trainer finish its step and save a checkpoint
srun torchrun --nnodes="$SLURM_NNODES" --nproc_per_node="$gpus" --rdzv_id="$SLURM_JOB_ID" \
    --rdzv_backend=c10d --rdzv_endpoint="$head:29500" \
    -m denoisekit.cli train --config "$config" --out "$out" --device cuda
