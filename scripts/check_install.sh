#!/usr/bin/env bash
# What a user's install gets: a fresh venv with TORCH (default: the declared floor, torch==2.6.0) and only the runtime
# dependencies imports every module, trains a toy run, resumes it, reads it back (info) and samples from it; a
# built-in data set that needs an extra says so in one line. Usage: scripts/check_install.sh [TORCH_SPEC] [VENV_DIR]
set -euo pipefail
TORCH_SPEC=${1:-torch==2.6.0}
VENV=${2:-$(mktemp -d)/venv}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q "$TORCH_SPEC"
"$VENV/bin/pip" install -q "$ROOT" "$TORCH_SPEC"          # runtime dependencies only: no extras
"$VENV/bin/python" "$ROOT/scripts/import_all.py"
cat > "$WORK/run.yaml" <<'YAML'
data: moons
net: {hidden: 32, depth: 2}
train: {steps: 6, batch_size: 16, progress: false, checkpoint_every: 2, log_every: 2, tensorboard: false}
sample: {steps: 3, n: 8}
YAML
"$VENV/bin/denoisekit" train --config "$WORK/run.yaml" --out "$WORK/run"
"$VENV/bin/denoisekit" train --config "$WORK/run.yaml" --out "$WORK/run" --set train.steps=10 > "$WORK/resume.log"
grep -q "resuming" "$WORK/resume.log"
test -d "$WORK/run/checkpoints/step-0000010"
"$VENV/bin/denoisekit" info "$WORK/run" > /dev/null
"$VENV/bin/denoisekit" sample "$WORK/run" --n 8 --out "$WORK/run/samples.png"
if "$VENV/bin/denoisekit" train --config "$WORK/run.yaml" --out "$WORK/digits" --set data=digits 2> "$WORK/err"; then
    python3 -c "import sklearn" 2>/dev/null || { echo "digits trained without scikit-learn?"; exit 1; }
else
    grep -q "needs the scikit-learn package" "$WORK/err"
fi
echo "install check passed: $("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'), runtime dependencies only"
