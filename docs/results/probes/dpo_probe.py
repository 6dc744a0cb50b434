"""DPO's stats per minibatch over two rounds on the demo config, and per step count the denoising-error
scale and the winner-loser difference under the reference at the timesteps DPO uses. Run from the project
root: OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 .venv/bin/python docs/results/probes/dpo_probe.py [MODE]
(MODE: dpo.timesteps, default the config's)."""
import sys
import time

import numpy as np
import torch

from lasro.generators import adapters_off
from lasro.methods import load_config
from lasro.methods.common import denoising_timesteps, x0_errors
from lasro.training import Trainer

torch.set_num_threads(1)
t0 = time.time()
extra = [f"dpo.timesteps={sys.argv[1]}"] if len(sys.argv) > 1 else []
cfg = load_config(None, ["algorithm.method=dpo", "logging.output_dir=probe-out/dpo", "logging.tensorboard=false",
                         "logging.progress=false", "prompts.final_eval=null", "prompts.eval=shapes:test:4",
                         "prompts.eval_seeds=1", "exploration.overlap_scoring=false", *extra])
tr = Trainer(cfg)
dpo = tr.method
orig = dpo.preference_loss


def logged(batch):
    loss, st = orig(batch)
    steps = dpo.samples.gather(batch[0])[2]
    print({k: round(v, 4) for k, v in st.items()}, "loss", round(float(loss), 4), "steps in batch",
          np.bincount(steps.numpy(), minlength=3)[1:])
    return loss, st


dpo.preference_loss = logged
for r in (1, 2):
    tr.round = r
    dpo.train_round(r)
win, lose = dpo.pairs
c = dpo.samples
for k in (1, 2):
    m = c.steps[win] == k
    w, l = win[m][:32], lose[m][:32]
    n = len(w)
    lat_w, prompts, steps = c.gather(w)
    lat_l = c.gather(l)[0]
    t = denoising_timesteps(tr, steps, cfg.dpo.timesteps).repeat(2)
    eps = torch.randn(tr.gen.latent_shape(n)).repeat(2, 1, 1, 1)
    emb = tr.embeds(list(prompts) * 2)
    with torch.no_grad():
        e = x0_errors(tr.gen, tr.unet, torch.cat([lat_w, lat_l]), t, eps, emb)
        with adapters_off(tr.base_unet) as ref_unet:
            rf = x0_errors(tr.gen, ref_unet, torch.cat([lat_w, lat_l]), t, eps, emb)
    inside = -0.5 * cfg.dpo.beta * ((e[:n] - e[n:]) - (rf[:n] - rf[n:]))
    print(f"{k}-step pairs at t={int(t[0])}: policy err mean {float(e.mean()):.4f}, ref err {float(rf.mean()):.4f}, "
          f"|err_w-err_l| median {float((rf[:n] - rf[n:]).abs().median()):.4f}, inside median |.| "
          f"{float(inside.abs().median()):.3f}, implicit acc {float((inside > 0).float().mean()):.2f}")
print("secs", round(time.time() - t0, 1))
