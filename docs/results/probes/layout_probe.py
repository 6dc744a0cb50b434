"""Can the surrogates see where things are? LaSRO's pre-training on the demo config (12 collections of
16 prompts x 4 samples x 2 step counts, 1000 surrogate steps), then the pair accuracy on one more
collection it never trained on, for a reward that depends only on layout (``leftness``: how far left the
non-white pixels sit) and for the detector, with and without ``surrogate.coordinates`` (x/y channels into
the head). Run from the project root (about 2 minutes a setting on 2 CPU cores):
OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 .venv/bin/python docs/results/probes/layout_probe.py [pixel|latent] [leftness|shapes_detector] [--quick]"""
import sys
import time

import numpy as np
import torch

from lasro.methods import load_config
from lasro.rewards.base import Reward
from lasro.rewards.registry import register_reward
from lasro.training import Trainer


@register_reward("leftness", description="probe: mean of 1 - 2x/W over non-white pixels (1: all at the left edge)")
class Leftness(Reward):
    """Where the objects are and nothing else: +1 when every non-white pixel is at the left edge, -1 at
    the right, 0 for an empty image."""

    def __call__(self, images, prompts, metadata):
        out = []
        for im in images:
            a = np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0
            ink = 1.0 - a.min(axis=-1)  # 0 on white
            x = np.linspace(1.0, -1.0, a.shape[1])[None, :]
            out.append(float((ink * x).sum() / ink.sum()) if ink.sum() > 1e-6 else 0.0)
        return np.array(out)


space = sys.argv[1] if len(sys.argv) > 1 else "pixel"
rewards = [a for a in sys.argv[2:] if a != "--quick"] or ["leftness", "shapes_detector"]
torch.set_num_threads(2)
QUICK = (["lasro.pretrain_collect_rounds=1", "lasro.pretrain_surrogate_steps=5"] if "--quick" in sys.argv else
         ["lasro.pretrain_collect_rounds=12", "lasro.pretrain_surrogate_steps=1000"])
for reward in rewards:
    for coordinates in (False, True):
        t0 = time.time()
        cfg = load_config(None, [f"reward={reward}", f"surrogate.space={space}", f"surrogate.coordinates={coordinates}",
                                 *QUICK,
                                 "logging.output_dir=probe-out/layout", "logging.tensorboard=false",
                                 "logging.progress=false", "prompts.final_eval=null", "prompts.eval=shapes:test:4",
                                 "prompts.eval_seeds=1", "exploration.overlap_scoring=false"])
        tr = Trainer(cfg)
        tr.warm_start_point = lambda *a, **k: None  # no checkpoints in a probe
        stats = tr.method.warm_start()
        print(f"{space} surrogate, reward {reward}, coordinates {coordinates}: held-out pair accuracy "
              f"{stats['surrogate/pair_accuracy']:.3f} (on-policy pairs {stats['surrogate/pair_accuracy_gate']:.3f}), "
              f"final training loss {stats['surrogate/loss']:.3f}, {time.time() - t0:.0f} s", flush=True)
        del tr
