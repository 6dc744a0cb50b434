#!/bin/bash
# Second device call: `lasro train` variants (exploration perturbation, pixel surrogate, small steps).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 OMP_NUM_THREADS=2 PYTHONUNBUFFERED=1 MPLBACKEND=Agg
T0=$(date +%s)
LT="import sys; from lasro.cli import main; sys.exit(main())"
P="--set algorithm.pretrain_collect_rounds=16 --set algorithm.pretrain_surrogate_steps=1000"
SMALL="--set optim.lr=1e-4 --set algorithm.reg_weight=1.0 --set algorithm.generator_steps=3"
train() { name=$1; shift; timeout 255 python3 -c "$LT" train lasro/configs/demo.yaml --set logging.output_dir=/tmp/tr/$name --set logging.progress=false --set logging.tensorboard=false $P "$@" > /tmp/tr_$name.log 2>&1; echo "train $name rc=$? at $(( $(date +%s) - T0 ))s"; }
mkdir -p /tmp/tr
train S1 --set exploration.perturb_std=0.1 &
train S2 --set exploration.perturb_std=0.3 &
train S3 --set exploration.perturb_std=0.1 $SMALL &
train S4 --set surrogate.space=pixel &
train S5 --set surrogate.space=pixel $SMALL &
train S6 --set optim.lr=5e-5 --set algorithm.reg_weight=1.0 --set algorithm.generator_steps=2 --set algorithm.min_pair_accuracy=0.55 &
wait
echo "all done at $(( $(date +%s) - T0 ))s"
tar czf $OUT/train.tgz --exclude='*.safetensors' --exclude='*.pt' --exclude='*.png' -C /tmp tr
tar czf $OUT/logs.tgz -C /tmp $(cd /tmp && ls tr_*.log)
