#!/usr/bin/env bash
# A judge as a constraint: LaSRO on JPEG compressibility (the demo model, LaSRO's tuned settings as in
# `bench compare --preset tuned_unguarded`, 1024 queries), the detector as a held-out judge, without and with
# max_drop. Run from the repository root, alone on the machine (about 3 minutes each on 2 cores).
set -euo pipefail
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
common=(--set reward=jpeg_compressibility --set optim.lr=1e-3 --set lasro.pretrain_collect_rounds=3
        --set lasro.pretrain_surrogate_steps=300 --set algorithm.max_reward_queries=1024
        --set logging.eval_every_queries=128 --set prompts.final_eval=shapes:test:64 --set prompts.final_eval_seeds=2
        --set surrogate.coordinates=true --set logging.progress=false)
.venv/bin/lasro train "${common[@]}" --set 'eval_rewards=[shapes_detector]' --set logging.output_dir=runs/guard-off
.venv/bin/lasro train "${common[@]}" --set 'eval_rewards=[{name: shapes_detector, max_drop: 0.03}]' \
  --set logging.output_dir=runs/guard-on
for d in guard-off guard-on; do
  mkdir -p "docs/results/judge-guard/$d"
  cp "runs/$d/final_eval.json" "runs/$d/metrics.jsonl" "runs/$d/reward_curve.png" "docs/results/judge-guard/$d/"
done
# a looser tolerance: the guard lets the first rounds through
.venv/bin/lasro train "${common[@]}" --set 'eval_rewards=[{name: shapes_detector, max_drop: 0.2}]' \
  --set logging.output_dir=runs/guard-0.2
mkdir -p docs/results/judge-guard/guard-0.2
cp runs/guard-0.2/final_eval.json runs/guard-0.2/metrics.jsonl runs/guard-0.2/reward_curve.png docs/results/judge-guard/guard-0.2/
