#!/usr/bin/env bash
# The step-cost table: `lasro bench step` at three sizes, each with the anchor (default), the anchor every 4 steps,
# lora_l2 and a round's reused inputs, one JSON line per run into step-cost.jsonl. Run from the repository root, alone on the machine.
set -uo pipefail
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
out=docs/results/step-cost/step-cost.jsonl
: > "$out"
for cfg in configs/tiny-jpeg.yaml configs/bench-30m.yaml; do
  for reg in "lasro.regularizer=anchor" "lasro.anchor_every=4" "lasro.regularizer=lora_l2" "lasro.round_inputs=reused"; do
    .venv/bin/lasro bench step "$cfg" --repeats 4 --warmup 1 --set "$reg" 2>/dev/null | tail -1 >> "$out"
  done
done
for reg in "lasro.regularizer=anchor" "lasro.regularizer=lora_l2"; do
  .venv/bin/lasro bench step configs/bench-sdxl-turbo-random.yaml --repeats 2 --warmup 1 \
    --set model.gradient_checkpointing=true --set surrogate.gradient_checkpointing=true --set "$reg" 2>/dev/null \
    | tail -1 >> "$out"
done
# a round's reused inputs (no checkpointing: 14 GiB fits this machine's 24 GiB), with the anchor and with lora_l2
for reg in "lasro.regularizer=anchor" "lasro.regularizer=lora_l2"; do
  .venv/bin/lasro bench step configs/bench-sdxl-turbo-random.yaml --repeats 5 --warmup 1 \
    --set lasro.round_inputs=reused --set "$reg" 2>/dev/null | tail -1 >> "$out"
done
# fewer encoder blocks (fresh inputs, whole rounds of 5 steps, no checkpointing), one after the other, alone
for extra in "--set lasro.regularizer=lora_l2 --set surrogate.encoder_blocks=2" \
             "--set lasro.regularizer=anchor --set surrogate.encoder_blocks=2" "--set lasro.regularizer=anchor"; do
  # shellcheck disable=SC2086
  .venv/bin/lasro bench step configs/bench-sdxl-turbo-random.yaml --repeats 2 --warmup 1 $extra 2>/dev/null \
    | tail -1 >> "$out"
done
for cfg in configs/tiny-jpeg.yaml configs/bench-30m.yaml; do
  for reg in "lasro.regularizer=anchor" "lasro.regularizer=lora_l2"; do
    .venv/bin/lasro bench step "$cfg" --repeats 4 --warmup 1 --set "$reg" 2>/dev/null | tail -1 >> "$out"
  done
done
# lora_l2 on the demo, 3 seeds (the main job otherwise as shipped), and the anchor's seed 0 on the same machine
for s in 0 1 2; do
  .venv/bin/lasro train --set seed=$s --set lasro.regularizer=lora_l2 --set logging.output_dir=runs/l2-s$s
done
.venv/bin/lasro train --set seed=0 --set logging.output_dir=runs/anchor-s0
