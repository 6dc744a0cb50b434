"""Sample the demo model (optionally with a LoRA) on shapes:test x seeds at 1 and 2 steps; save uint8 arrays."""
import sys, numpy as np, torch
from lasro.generators import FewStepGenerator
from lasro.methods.registry import load_config
from lasro.prompts import resolve_prompts
from lasro.evaluation import fixed_noises
out, lora = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else None)
cfg = load_config(None, [])
gen = FewStepGenerator.from_config(cfg.model)
if lora: gen.pipe.load_lora_weights(lora)
prompts = [p for p in resolve_prompts("shapes:test", "x") for _ in range(2)]
noise, eps = fixed_noises(gen, len(prompts), 20000)
res = {}
with torch.no_grad():
    for k in (1, 2):
        ims = []
        for i in range(0, len(prompts), 64):
            sl = slice(i, i + 64)
            x = gen.sample(gen.unet, noise[sl], gen.encode_prompts(prompts[sl]), timesteps=gen.timesteps[:k], renoise=[eps[sl]])[-1]
            ims += [np.asarray(im.convert("RGB")) for im in gen.decode(x)]
        res[f"k{k}"] = np.stack(ims)
np.savez_compressed(out, prompts=np.array(prompts), **res)
