"""A short instrumented LaSRO run on the demo config: per round the trust region's statistics (clipped share,
surrogate gain in within-prompt stds, RMS latent move from the round's start), the gate's pair accuracy,
and the within- vs between-prompt spread of the surrogate's scores on the last collection. Run from the
project root: OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 .venv/bin/python docs/results/probes/trust_region_probe.py
[relative|pooled]"""
import sys
import time

import numpy as np
import torch

from lasro.methods import load_config
from lasro.rollouts import same_prompt_groups
from lasro.training import Trainer

torch.set_num_threads(1)
t0 = time.time()
mode = sys.argv[1] if len(sys.argv) > 1 else "relative"
cfg = load_config(None, [
    "logging.output_dir=probe-out/run", "logging.tensorboard=false", "logging.progress=false",
    "logging.eval_every=1000", "logging.checkpoint_every=1000", "prompts.final_eval=null",
    "prompts.eval=shapes:test:4", "prompts.eval_seeds=1", "lasro.pretrain_collect_rounds=5",
    "lasro.pretrain_surrogate_steps=400", "algorithm.rounds=4", "lasro.min_pair_accuracy=0",
    "lasro.surrogate_steps=90", "exploration.overlap_scoring=false", f"lasro.trust_region={mode}"])
tr = Trainer(cfg)
tr.save_checkpoint = lambda pre=None: None
rows = tr.train()
print("train secs", round(time.time() - t0, 1))
for r in rows:
    print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()
           if k.startswith(("generator/", "surrogate/", "round"))})
las = tr.method
buf = las.buffer
last = np.flatnonzero(buf.rounds == buf.rounds.max())
lat, prompts, steps = buf.gather(last)
with torch.no_grad():
    s = las.base_surrogate(lat, tr.embeds(prompts), steps, pixels=buf.gather_pixels(last)).float().numpy()
for k in (1, 2):
    m = steps.numpy() == k
    groups = same_prompt_groups([p for p, mm in zip(prompts, m) if mm], np.full(m.sum(), k))
    sk = s[m]
    print(f"{k}-step scores: within-prompt std {np.mean([sk[g].std() for g in groups]):.3f}, "
          f"between-prompt std of means {np.std([sk[g].mean() for g in groups]):.3f}")
print("total secs", round(time.time() - t0, 1))
