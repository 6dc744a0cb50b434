"""How many PPO updates a round can take. Four PPO rounds on the demo config with the differentiable
``saturation`` reward (clip 0.2, lr 1e-3), measuring after each round the reward of the deterministic 1- and
2-step outputs on 64 fixed prompts and noises. ``minibatches``: the earlier default, 2 epochs of minibatches
of 16 (8 updates on a round's 64 samples); ``ddpo``: one update per 64 samples (the default now); ``exact``:
the same updates on the exact reward gradient of the same samples (DRaFT's), for scale. Run from the project
root (about a minute each):
OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 .venv/bin/python docs/results/probes/ppo_updates_probe.py [minibatches|ddpo|exact]"""
import sys

import torch

from lasro.methods import load_config
from lasro.training import Trainer

torch.set_num_threads(2)
mode = sys.argv[1] if len(sys.argv) > 1 else "ddpo"
updates = ["ppo.epochs=2", "ppo.samples_per_update=16"] if mode == "minibatches" else []
cfg = load_config(None, ["algorithm.method=ppo", "reward=saturation", "ppo.clip_range=0.2", "optim.lr=1e-3", *updates,
                         "logging.output_dir=probe-out/ppo-updates", "logging.tensorboard=false",
                         "logging.progress=false", "prompts.final_eval=null", "prompts.eval=shapes:test:4",
                         "prompts.eval_seeds=1", "exploration.overlap_scoring=false"])
tr = Trainer(cfg)
ppo, gen = tr.method, tr.gen
fixed_noise = torch.randn(gen.latent_shape(64), generator=torch.Generator().manual_seed(123))
fixed_prompts = tr.train_prompts[:64]


def measure() -> list[float]:
    with torch.no_grad():
        outs = gen.sample(tr.base_unet, fixed_noise, tr.embeds(fixed_prompts), renoise=[torch.zeros_like(fixed_noise)])
        return [round(float(tr.reward.differentiable(gen.decode_pixels(x), fixed_prompts).mean()), 4) for x in outs]


if mode == "exact":
    def exact_loss(idx):
        d = ppo.rollout
        prompts = [d["prompts"][i] for i in idx]
        outs = gen.sample(tr.unet, d["noise"][idx], tr.embeds(prompts))
        return -sum(tr.reward.differentiable(gen.decode_pixels(x), prompts).float().mean() for x in outs), {}
    ppo.clipped_loss = exact_loss

print(mode, "round 0: saturation of the 1-/2-step outputs", measure())
for r in range(1, 5):
    stats = ppo.train_round(r)
    print(mode, f"round {r}:", measure(), f"updates {stats['ppo/updates']:.0f}, mean ratio 1-/2-step "
          f"{stats.get('ppo/ratio_1step', 1):.3f} / {stats.get('ppo/ratio_2step', 1):.3f}", flush=True)
