#!/usr/bin/env bash
# The benchmark suite in one GPU machine call: `lasro bench suite` over 3 seeds, then its ablation rows
# (lasro/configs/bench_suite_ablations.yaml), each with --jobs N (many demo-sized runs share one GPU and the
# machine's cores). A short LaSRO run first checks the CUDA path and stops the script at once if it fails.
# Everything stops by BUDGET seconds (default 540); a suite cut short keeps its finished runs, and a rerun
# with the same --out resumes it.
#
# Results come back as OUT/suite.tgz and OUT/ablations.tgz without checkpoints or LoRAs (each run's
# metrics.jsonl, final_eval.json, the first seed's before/after picture, every task's results.json and
# curves) plus OUT/logs.tgz; unpack them here and tabulate with
#   lasro bench suite --report-only --out DIR/suite      (and --suite lasro/configs/bench_suite_ablations.yaml)
#
# Needs python3 with a CUDA build of torch. lasro runs from this checkout (PYTHONPATH), not installed. On a
# machine without lasro's other dependencies, put their wheels in .whl/ (for the nvidia-h200 image: diffusers,
# transformers, pydantic, pydantic-core, annotated-types, typing-inspection, importlib-metadata).
# Usage:  OUT=/some/folder bash bench/gpu_suite.sh [BUDGET] [JOBS]
#   RESUME_FROM=DIR: start from DIR/suite and DIR/ablations (their results.json: the runs an earlier call
#   finished); SKIP_SMOKE=1: no smoke run; TOGETHER=1: the suite and the ablations at once, JOBS each
set -uo pipefail
cd "$(dirname "$0")/.."
BUDGET=${1:-540}
JOBS=${2:-20}
T0=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
at() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONUNBUFFERED=1 \
  MPLBACKEND=Agg
OUT=${OUT:?set OUT to the folder for the results}
W=/tmp/gpu_suite
mkdir -p "$W"
[ -n "${RESUME_FROM:-}" ] && cp -r "$RESUME_FROM"/. "$W"/
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, diffusers, transformers, peft, accelerate, cv2, pydantic; print('torch', torch.__version__, \
'diffusers', diffusers.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'cuda', \
torch.cuda.is_available(), 'cores', __import__('os').cpu_count())" || exit 1
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device visible to torch'" || exit 1

stop_workers() { pkill -f spawn_main; sleep 2; pkill -9 -f spawn_main; true; }
pack() {  # $1: the suite folder under $W
  [ -d "$W/$1" ] || return 0
  (cd "$W" && find "$1" \( -name '*.json' -o -name '*.jsonl' -o -name '*.md' -o -name 'curves_*.png' \
     -o -path '*seed-0/samples/before_after_2step.png' \) -print0 | tar czf "$OUT/$1.tgz" --null -T -)
  at "packed $1: $(du -h "$OUT/$1.tgz" | cut -f1)"
}
finish() { stop_workers; pack suite; pack ablations; (cd "$W" && tar czf "$OUT/logs.tgz" ./*.log); at "done"; }
trap finish EXIT

# the two suites, each cut at the time left
run_suite() { timeout $(( $(left) - 45 )) python3 -m lasro.cli bench suite --seeds 0,1,2 --jobs "$JOBS" --out "$W/suite" \
  > "$W/suite.log" 2>&1; }
run_ablations() { timeout $(( $(left) - 45 )) python3 -m lasro.cli bench suite \
  --suite lasro/configs/bench_suite_ablations.yaml --jobs "$JOBS" --out "$W/ablations" > "$W/ablations.log" 2>&1; }
finished() { grep -c ': finished$' "$W/$1.log"; }

# 1. the CUDA path: one short LaSRO run on the demo model
if [ -z "${SKIP_SMOKE:-}" ]; then
  timeout 150 python3 -m lasro.cli bench compare --methods lasro --seeds 0 --queries 128 --no-final-eval \
    --set lasro.pretrain_collect_rounds=1 --set lasro.pretrain_surrogate_steps=20 --out "$W/smoke" > "$W/smoke.log" 2>&1
  rc=$?
  if [ $rc -ne 0 ]; then tail -40 "$W/smoke.log"; at "smoke run failed (rc $rc): stopping"; exit 1; fi
  at "smoke run ok"; grep "lasro |" "$W/smoke.log" | head -2
fi

if [ -n "${TOGETHER:-}" ]; then
  run_suite & run_ablations; wait
  at "suite: $(finished suite), ablations: $(finished ablations) runs finished"
  exit 0
fi
# 2. the suite, 3 seeds; 3. the ablation rows with the time left
run_suite
at "suite rc $?: $(finished suite) runs finished"
stop_workers
if [ "$(left)" -gt 120 ]; then
  run_ablations
  at "ablations rc $?: $(finished ablations) runs finished"
fi
