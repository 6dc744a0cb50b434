"""Gradient-ascent probe: moves held-out latents along the (ensemble-mean) gradient of surrogates saved by
breakdown.py and reports the true reward change by step count. Usage: ascent.py 0,1,0_1_2_3 (seeds; env DATA, OUT)."""
import os, sys, numpy as np, torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lasro.surrogate import PixelSurrogate
from lasro.rewards.registry import build_reward
torch.set_num_threads(2)
OUT = os.environ.get("OUT", "/tmp/probe")
sets = torch.load(os.environ.get("DATA", "/tmp/data.pt"), weights_only=False)
from common import D, embeds, gen
reward = build_reward("shapes_detector")
held = sets["held"]
def load(seed):
    s = PixelSurrogate(gen.decode_pixels, D, 32, 3); s.load_state_dict(torch.load(OUT + f"/base{seed}.pt")); s.eval()
    for p in s.parameters(): p.requires_grad_(False)
    return s
def score(lat, prompts, k):
    with torch.no_grad():
        pix = torch.cat([gen.decode_uint8(lat[i:i+256]) for i in range(0, len(lat), 256)])
    return reward(gen.to_images(pix), prompts, [{"steps": k}] * len(prompts)).scores
sel = np.arange(0, 2048, 2)  # 1024 samples
lat0 = held["latents"][sel].float(); prompts = [held["prompts"][i] for i in sel]; steps = torch.as_tensor(np.asarray(held["steps"])[sel])
emb = embeds(prompts)
r0 = score(lat0, prompts, 0)
print("r0", {k: round(float(r0[steps.numpy()==k].mean()), 4) for k in (1, 2)}, flush=True)
def grad(members, x):
    x = x.detach().clone().requires_grad_(True)
    tot = 0
    for i in range(0, len(x), 256):
        s = torch.stack([m(x[i:i+256], emb.index(slice(i, i+256)), steps[i:i+256]) for m in members])
        # each member's score standardised so no member dominates
        tot = tot + (s / s.detach().std(dim=1, keepdim=True)).mean(0).sum()
    tot.backward()
    g = x.grad
    return g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * (x[0].numel() ** 0.5)
configs = {n: [int(c) for c in n.split("_")] for n in sys.argv[1].split(",")}
for name, seeds in configs.items():
    members = [load(s) for s in seeds]
    g = grad(members, lat0)
    line = [name]
    for d in (0.05, 0.1, 0.2, 0.4):
        r = score(lat0 + d * g, prompts, 0)
        line.append(f"d{d}: " + " ".join(f"{k}s {float((r-r0)[steps.numpy()==k].mean()):+.4f}" for k in (1, 2)))
    # iterated ascent, 0.05 per step
    x = lat0.clone()
    for it in range(1, 9):
        x = x + 0.05 * grad(members, x)
        if it in (2, 4, 8):
            r = score(x, prompts, 0)
            line.append(f"it{it}: " + " ".join(f"{k}s {float((r-r0)[steps.numpy()==k].mean()):+.4f}" for k in (1, 2)))
    print(" | ".join(line), flush=True)
