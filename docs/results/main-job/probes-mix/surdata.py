"""Samples of the initial demo model for the surrogate probes (surprobe.py): 768 training prompts x 4 noises
(seed 1), at 1 and 2 steps, scored by the main job's reward (the demo config's: half detector, half
fidelity). Usage: python surdata.py OUT.npz"""
import sys

import numpy as np
from lasro.evaluation import render_samples
from lasro.generators import FewStepGenerator
from lasro.methods.registry import load_config
from lasro.prompts import resolve_prompts
from lasro.rewards import build_reward

cfg = load_config(None, [])
gen = FewStepGenerator.from_config(cfg.model)
reward = build_reward(cfg.reward)
train = resolve_prompts("shapes:train", "prompts")
prompts = [train[i] for i in np.random.default_rng(0).choice(len(train), 768, replace=False) for _ in range(4)]
out = {"prompts": np.array(prompts)}
for k in (1, 2):
    images = render_samples(gen, prompts, 1, range(len(prompts)), k)
    scored = reward(images, prompts, [{}] * len(images))
    out[f"k{k}"] = np.stack([np.asarray(im.convert("RGB")) for im in images])
    out[f"r{k}"] = scored.scores
    out[f"d{k}"], out[f"f{k}"] = scored.info["reward/shapes_detector"], scored.info["reward/shapes_fidelity"]
np.savez_compressed(sys.argv[1], **out)
