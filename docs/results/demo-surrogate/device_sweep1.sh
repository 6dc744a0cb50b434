#!/bin/bash
# One device call: offline surrogate probe + several `lasro train` variants in parallel.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 OMP_NUM_THREADS=2 PYTHONUNBUFFERED=1 MPLBACKEND=Agg
nvidia-smi --query-gpu=name,memory.used --format=csv
python3 -c "import torch, diffusers, transformers, peft, accelerate, cv2; print(torch.__version__, diffusers.__version__, transformers.__version__, peft.__version__, accelerate.__version__, cv2.__version__, torch.cuda.is_available())" || exit 1
T0=$(date +%s)
LT="import sys; from lasro.cli import main; sys.exit(main())"
P="--set algorithm.pretrain_collect_rounds=16 --set algorithm.pretrain_surrogate_steps=1000"
train() { name=$1; shift; timeout 470 python3 -c "$LT" train lasro/configs/demo.yaml --set logging.output_dir=/tmp/tr/$name --set logging.progress=false --set logging.tensorboard=false "$@" > /tmp/tr_$name.log 2>&1; echo "train $name rc=$? at $(( $(date +%s) - T0 ))s"; }
mkdir -p /tmp/tr
train T0 &
train T1 $P &
train T2 $P --set surrogate.backbone=frozen &
train T3 $P --set optim.lr=1e-4 --set algorithm.reg_weight=1.0 &
train T4 $P --set exploration.samples_per_prompt=8 --set exploration.prompts_per_round=8 &
train T5 $P --set algorithm.min_pair_accuracy=0.65 &
timeout 200 python3 docs/results/demo-surrogate/surrogate_probe.py collect /tmp/probe.pt 8 2 64 8 2>&1 | grep -v -i "warn\|loading" ; echo "collect done at $(( $(date +%s) - T0 ))s"
fit() { timeout $((520 - ($(date +%s) - T0))) python3 docs/results/demo-surrogate/surrogate_probe.py fit /tmp/probe.pt "$@" 1500 250 2>/dev/null | grep '^{' >> $OUT/probe.jsonl; }
fit base 512,2048,8192 &
fit frozen,full 2048,8192 &
fit lowlr,wd 2048,8192 &
fit t200,t500 2048,8192 &
fit flip,b128 2048,8192 &
fit head1,t500flip,fullflip,pixel 2048 &
wait
echo "all done at $(( $(date +%s) - T0 ))s"
tar czf $OUT/train.tgz --exclude='*.safetensors' --exclude='*.pt' --exclude='*.png' -C /tmp tr
tar czf $OUT/logs.tgz -C /tmp $(cd /tmp && ls tr_*.log)
