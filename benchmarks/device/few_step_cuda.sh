#!/bin/bash
export PYTHONPATH=$PWD/src:$PWD/.gpu/site PYTHONUNBUFFERED=1 DENOISEKIT_CACHE=$PWD/.gpu/cache
nvidia-smi -L; python3 -c "import torch;print(torch.__version__, torch.cuda.get_device_name())"
TRAIN=${TRAIN:-400}
S=$(date +%s)
(timeout $TRAIN python3 -m denoisekit.cli distill --method progressive --teacher .gpu/demo --out /tmp/pd --stages 32,16,8,4,2,1 --steps-per-stage ${PD_STEPS:-2000} --batch-size 128 --lr 2e-4 --device cuda --set train.progress=false --set train.tensorboard=false --set train.checkpoint_every=500; echo "pd rc $? wall $(( $(date +%s) - S ))") > $OUT/pd.log 2>&1 &
(timeout $TRAIN python3 -m denoisekit.cli distill --method consistency --teacher .gpu/demo --out /tmp/cd --steps-per-stage ${CD_STEPS:-12000} --batch-size 128 --lr 2e-4 --device cuda --set train.progress=false --set train.tensorboard=false --set train.checkpoint_every=1000; echo "cd rc $? wall $(( $(date +%s) - S ))") > $OUT/cd.log 2>&1 &
timeout 240 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py > $OUT/pytest.log 2>&1; echo "pytest rc $? at $(( $(date +%s) - S ))s"
tail -3 $OUT/pytest.log
wait
tail -2 $OUT/pd.log $OUT/cd.log
ls /tmp/pd/stages/*/checkpoints /tmp/cd/stages/*/checkpoints 2>&1 | tail -20
for d in /tmp/pd/stages/* /tmp/cd/stages/*; do echo $d; tail -2 $d/metrics.csv; done
timeout 150 python3 .gpu/score.py /tmp/pd /tmp/cd 2>&1 | grep -v Warning
echo "total $(( $(date +%s) - S ))s"
