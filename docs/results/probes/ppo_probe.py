"""PPO's ratios and clip fractions per minibatch step of one round on the demo config, and how often the
output-noise action alone changes the detector's score. Run from the project root:
OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 .venv/bin/python docs/results/probes/ppo_probe.py"""
import time

import numpy as np
import torch

from lasro.methods import load_config
from lasro.training import Trainer

torch.set_num_threads(1)
t0 = time.time()
cfg = load_config(None, ["algorithm.method=ppo", "logging.output_dir=probe-out/ppo", "logging.tensorboard=false",
                         "logging.progress=false", "prompts.final_eval=null", "prompts.eval=shapes:test:4",
                         "prompts.eval_seeds=1", "exploration.overlap_scoring=false"])
tr = Trainer(cfg)
ppo = tr.method
orig = ppo.clipped_loss


def logged(idx):
    loss, st = orig(idx)
    with torch.no_grad():
        med = [float(torch.stack(r).log().abs().median()) for r in ppo.ratios(idx)]
    print({k: round(v, 5) for k, v in st.items()}, "median |log ratio| 1/2-step", [round(v, 5) for v in med])
    return loss, st


ppo.clipped_loss = logged
tr.round = 1
ppo.train_round(1)
d = ppo.rollout
x2, prompts = d["outs"][1], d["prompts"]
g = torch.Generator().manual_seed(5)
out_a = tr.reward(tr.gen.decode(x2), prompts, [{}] * len(prompts)).scores
out_b = tr.reward(tr.gen.decode(x2 + cfg.ppo.output_std * torch.randn(x2.shape, generator=g)), prompts,
                  [{}] * len(prompts)).scores
print(f"2-step: share of samples whose reward changes under a second sigma={cfg.ppo.output_std} output-noise draw:",
      float(np.mean(np.abs(out_a - out_b) > 1e-9)), "mean |change|", float(np.mean(np.abs(out_a - out_b))))
print("secs", round(time.time() - t0, 1))
