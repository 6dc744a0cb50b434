"""What does a shorter latent surrogate lose? LaSRO's pre-training on the demo model with the latent (UNet
encoder) surrogate, keeping the first N of its 3 down blocks (`surrogate.encoder_blocks`; all 3 and the mid
block is the paper's), then the pair accuracy on 3 more collections it never trained on (about 450 pairs,
so +-0.02 at 1 std), for the detector and for saturation. Pre-training as `layout_probe.py` (12 collections
of 16 prompts x 4 samples x 2 step counts, 1000 surrogate steps). Run from the project root:
OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 .venv/bin/python docs/results/probes/encoder_blocks_probe.py [rewards...] [--blocks 1,2,3] [--quick]"""
import sys
import time

import numpy as np
import torch

from lasro.methods import load_config
from lasro.training import Trainer

args = sys.argv[1:]
blocks = [1, 2, 3]
if "--blocks" in args:
    i = args.index("--blocks")
    blocks = [int(b) for b in args[i + 1].split(",")]
    del args[i:i + 2]
quick = "--quick" in args
rewards = [a for a in args if a != "--quick"] or ["shapes_detector", "saturation"]
torch.set_num_threads(2)
PRETRAIN = (["lasro.pretrain_collect_rounds=1", "lasro.pretrain_surrogate_steps=5"] if quick else
            ["lasro.pretrain_collect_rounds=12", "lasro.pretrain_surrogate_steps=1000"])
for reward in rewards:
    for n in blocks:
        t0 = time.time()
        cfg = load_config(None, [f"reward={reward}", "surrogate.space=latent", f"surrogate.encoder_blocks={n}",
                                 *PRETRAIN, "logging.output_dir=probe-out/encoder-blocks", "logging.tensorboard=false",
                                 "logging.progress=false", "prompts.final_eval=null", "prompts.eval=shapes:test:4",
                                 "prompts.eval_seeds=1", "exploration.overlap_scoring=false"])
        tr = Trainer(cfg)
        tr.warm_start_point = lambda *a, **k: None  # no checkpoints in a probe
        stats = tr.method.warm_start()
        pretrain_s = time.time() - t0
        held_out = [tr.method.pair_accuracy(tr.collector.collect(explore=True), ("all", "on_policy"))
                    for _ in range(1 if quick else 3)]
        accuracy, on_policy = np.nanmean(np.array(held_out), axis=0)
        params = sum(p.numel() for p in tr.method.base_surrogate.parameters()) / 1e6
        print(f"reward {reward}, encoder_blocks {n} ({params:.2f} M surrogate params): held-out pair accuracy "
              f"{accuracy:.3f} over {len(held_out)} collections (on-policy pairs {on_policy:.3f}; pre-training's own "
              f"held-out collection {stats['surrogate/pair_accuracy']:.3f}), final training loss "
              f"{stats['surrogate/loss']:.3f}, pre-training {pretrain_s:.0f} s", flush=True)
        del tr
