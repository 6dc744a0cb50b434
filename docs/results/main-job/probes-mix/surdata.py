"""Samples of the base demo model for surrogate probes: train prompts x 4 noises, 2-step and 1-step, scored by the mix reward."""
import numpy as np, torch
from PIL import Image
from lasro.generators import FewStepGenerator
from lasro.methods.registry import load_config
from lasro.prompts import resolve_prompts
from lasro.rewards.shapes_detector import ShapesDetector
from lasro.rewards.shapes_fidelity import ShapesFidelity
cfg = load_config(None, [])
gen = FewStepGenerator.from_config(cfg.model)
rng = np.random.default_rng(0)
train = resolve_prompts("shapes:train", "x")
ps = [train[i] for i in rng.choice(len(train), 768, replace=False)]
prompts = [p for p in ps for _ in range(4)]
g = torch.Generator().manual_seed(1)
noise = torch.randn(gen.latent_shape(len(prompts)), generator=g); eps = torch.randn(gen.latent_shape(len(prompts)), generator=g)
out = {"prompts": np.array(prompts)}
with torch.no_grad():
    for k in (1, 2):
        ims = []
        for i in range(0, len(prompts), 128):
            sl = slice(i, i + 128)
            x = gen.sample(gen.unet, noise[sl], gen.encode_prompts(prompts[sl]), timesteps=gen.timesteps[:k], renoise=[eps[sl]])[-1]
            ims += [np.asarray(im.convert("RGB")) for im in gen.decode(x)]
        ims = np.stack(ims); pil = [Image.fromarray(a) for a in ims]
        d, _ = ShapesDetector()(pil, prompts, [{}] * len(pil)); f, _ = ShapesFidelity()(pil, prompts, [{}] * len(pil))
        out[f"k{k}"] = ims; out[f"r{k}"] = 0.5 * d + 0.5 * f; out[f"d{k}"] = d; out[f"f{k}"] = f
np.savez_compressed("/tmp/ana/surdata.npz", **out)
