"""Sample the demo model (optionally with a LoRA) on shapes:test x 2 seeds at 1 and 2 steps, on the final
evaluation's noises (seed 20000); save the uint8 images. Usage: python sample.py OUT.npz [LORA_DIR]"""
import sys

import numpy as np
from lasro.evaluation import render_samples
from lasro.generators import FewStepGenerator
from lasro.methods.registry import load_config
from lasro.prompts import resolve_prompts

out, lora = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else None)
gen = FewStepGenerator.from_config(load_config(None, []).model)
if lora:
    gen.pipe.load_lora_weights(lora)
prompts = [p for p in resolve_prompts("shapes:test", "prompts") for _ in range(2)]
images = {f"k{k}": np.stack([np.asarray(im.convert("RGB"))
                             for im in render_samples(gen, prompts, 20000, range(len(prompts)), k)]) for k in (1, 2)}
np.savez_compressed(out, prompts=np.array(prompts), **images)
