"""Does PPO's gradient point uphill? On the demo model with the differentiable ``saturation`` reward, the
first PPO step of a round (all ratios 1, so the clipped objective is REINFORCE with per-prompt advantages)
is compared with the exact gradient of the same samples' reward (back-propagated through the sampler and
the decoder, as DRaFT does), per step count: the cosine per rollout, and the cosine of the gradients
summed over rollouts (an unbiased estimator's rises about as sqrt(rollouts)). Run from the project root:
OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 .venv/bin/python docs/results/probes/ppo_gradient_probe.py [output_std] [rollouts]"""
import sys
import time

import numpy as np
import torch

from lasro.methods import load_config
from lasro.methods.ppo import ppo_clipped_loss
from lasro.training import Trainer

torch.set_num_threads(2)
ROLLOUTS = int(sys.argv[2]) if len(sys.argv) > 2 else 6
t0 = time.time()
std = sys.argv[1] if len(sys.argv) > 1 else "0.1"
cfg = load_config(None, ["algorithm.method=ppo", "reward=saturation", f"ppo.output_std={std}",
                         "logging.output_dir=probe-out/ppo-grad", "logging.tensorboard=false",
                         "logging.progress=false", "prompts.final_eval=null", "prompts.eval=shapes:test:4",
                         "prompts.eval_seeds=1", "exploration.overlap_scoring=false"])
tr = Trainer(cfg)
ppo, gen = tr.method, tr.gen
params = [p for p in tr.unet.parameters() if p.requires_grad]


def flat_grad(loss: torch.Tensor) -> torch.Tensor:
    grads = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for p, g in zip(params, grads)])


def cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


sums = {k: [0.0, 0.0] for k in (1, 2)}
per = {k: [] for k in (1, 2)}
rms = {k: [] for k in (1, 2)}
# what a first Adam step gains (it moves each element by lr * sign): sum g* sign(ghat) / sum |g*|, 1 for the exact
signs = {k: [] for k in (1, 2)}  # the PPO gradient's root-mean-square element (AdamW's eps is 1e-8)
for r in range(ROLLOUTS):
    ppo.collect_rollouts()
    d = ppo.rollout
    idx = np.arange(len(d["prompts"]))
    ratios = ppo.ratios(idx)
    emb = tr.embeds(d["prompts"])
    # the pathwise gradient of the same samples' reward: x1 from z_T; x2 from z_t1 = a x1 + s eps with the
    # rollout's eps, so that the gradient also flows through the first step
    x1 = gen.sample(tr.unet, d["noise"], emb, timesteps=gen.timesteps[:1])[0]
    t1 = torch.full((x1.shape[0],), gen.timesteps[1], dtype=torch.long)
    a, s = gen.alpha_sigma(t1, x1.float())
    eps = ((d["z_t1"] - a * x1.detach()) / s).detach()
    x2 = gen.predict_x0(tr.unet, a * x1 + s * eps, t1, emb)
    for k, x in ((1, x1), (2, x2)):
        ghat = -flat_grad(sum(ppo_clipped_loss(rt, d["adv"][k - 1], 1e9) for rt in ratios[k - 1]) / len(ratios[k - 1]))
        gtrue = flat_grad(tr.reward.differentiable(gen.decode_pixels(x), d["prompts"]).float().mean())
        per[k].append(cos(ghat, gtrue))
        rms[k].append(float(ghat.square().mean().sqrt()))
        signs[k].append(float((gtrue * ghat.sign()).sum() / gtrue.abs().sum()))
        sums[k][0] = sums[k][0] + ghat
        sums[k][1] = sums[k][1] + gtrue
    print(f"rollout {r}: cosine(PPO step, exact reward gradient) 1-step {per[1][-1]:+.3f}, 2-step {per[2][-1]:+.3f}; "
          f"sign alignment 1-step {signs[1][-1]:+.3f}, 2-step {signs[2][-1]:+.3f}", flush=True)
for k in (1, 2):
    print(f"{k}-step, output_std {std}: per-rollout cosine mean {np.mean(per[k]):+.3f} (range {min(per[k]):+.3f} "
          f"to {max(per[k]):+.3f}); cosine of the sums over {ROLLOUTS} rollouts {cos(*sums[k]):+.3f}; "
          f"RMS gradient element {np.median(rms[k]):.1e}; sign alignment mean {np.mean(signs[k]):+.3f}")
print("secs", round(time.time() - t0, 1))
