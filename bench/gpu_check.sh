#!/usr/bin/env bash
# The prepared GPU check: `lasro bench step` at full SDXL-Turbo size (random init, so no download), bf16, 512 x 512,
# batch 1, 4 and 8, one JSON line each (a failed batch prints {"batch": N, "error": ...} and the next one runs), then
# `lasro bench memory` (batch 1 and 2 measured, batch 8 and an 80 GiB GPU extrapolated) as a last line.
# Budget: under 8 minutes on one H200-class GPU (each batch is capped at 130 s, the memory line at 90 s).
#
# Needs python3 with a CUDA build of torch. lasro runs from this checkout (PYTHONPATH), not installed. On a machine
# without lasro's other dependencies, put their wheels in .whl/ first (for the nvidia-h200 image: diffusers,
# pydantic, pydantic-core, annotated-types, typing-inspection; the others are there); they are installed into
# /tmp/site. It stops at once, naming the module, if an import fails. Run from anywhere:  bash bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device visible to torch'" || exit 1
python3 -c "import lasro.bench.step" || { echo "a dependency of lasro is missing (see above): add its wheel to .whl/"; exit 1; }
for batch in 1 4 8; do
  timeout 130 python3 -m lasro.cli bench step configs/bench-sdxl-turbo-random.yaml --batch "$batch" \
    --set model.gradient_checkpointing=true --repeats 2 --warmup 1
  rc=$?
  [ $rc -eq 0 ] || echo "{\"batch\": $batch, \"error\": \"exit $rc$([ $rc -eq 124 ] && echo ': over 130 s')\"}"
done
# the memory line: peaks at batch 1 and 2 fitted and extrapolated to batch 8 and to an 80 GiB GPU (capped at 90 s)
timeout 90 python3 -m lasro.cli bench memory configs/bench-sdxl-turbo-random.yaml --memory-gib 80 --target-batch 8 \
  --set model.gradient_checkpointing=true --set surrogate.gradient_checkpointing=true \
  || echo '{"bench": "memory", "error": "failed or over 90 s"}'
