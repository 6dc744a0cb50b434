"""Trains pixel surrogates on the probe data (DATA) and prints held-out pair accuracy split by step count and
reward gap; saves each to OUT/<variant><SEED>.pt. Usage: breakdown.py VARIANTS SIZE STEPS EVERY (env SEED, T, DATA, OUT)."""
import json, os, sys, time
import numpy as np, torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lasro.buffer import ranked_pairs
from lasro.surrogate import PixelSurrogate, bradley_terry_loss
torch.set_num_threads(int(os.environ.get("T", 2)))
OUT = os.environ.get("OUT", "/tmp/probe")
os.makedirs(OUT, exist_ok=True)
sets = torch.load(os.environ.get("DATA", "/tmp/data.pt"), weights_only=False)
from common import D, embeds, gen
from models import MLPPixel

dp = gen.decode_pixels
V = {"base": lambda: PixelSurrogate(dp, D, 32, 3), "mlp": lambda: MLPPixel(dp, D)}
held = sets["held"]; hs = np.asarray(held["steps"]); hr = np.asarray(held["rewards"])
hw, hl = ranked_pairs(held["prompts"], held["steps"], held["rewards"])
variants, size, steps, every = sys.argv[1].split(","), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
lr = 1e-3
tr = {k: v[:size] for k, v in sets["train"].items()}
w, l = ranked_pairs(tr["prompts"], tr["steps"], tr["rewards"])
def breakdown(sc, win, lose, s, r):
    ok = sc[win] > sc[lose]; out = {"all": round(float(ok.mean()), 4)}
    for k in (1, 2):
        m = s[win] == k; out[f"s{k}"] = round(float(ok[m].mean()), 4)
    gap = r[win] - r[lose]
    for lo, hi in ((0, 0.2), (0.2, 0.4), (0.4, 1.1)):
        m = (gap > lo) & (gap <= hi) & (s[win] == 2); out[f"s2gap{lo}"] = round(float(ok[m].mean()), 3)
    return out
for vn in variants:
    SEED = int(os.environ.get("SEED", 0)); torch.manual_seed(SEED); rng = np.random.default_rng(SEED)
    sur = V[vn]()
    opt = torch.optim.AdamW(sur.parameters(), lr=lr, weight_decay=0.0)
    n = 32
    @torch.no_grad()
    def scores(s):
        sur.eval(); sc = []
        for i in range(0, len(s["prompts"]), 512):
            j = np.arange(i, min(i + 512, len(s["prompts"])))
            sc.append(sur(s["latents"][j], embeds([s["prompts"][k] for k in j]), torch.as_tensor(s["steps"][j]), pixels=s["pixels"][j]))
        return torch.cat(sc).numpy()
    t = time.time()
    for step in range(1, steps + 1):
        sur.train()
        pick = rng.integers(0, len(w), n)
        idx = np.concatenate([w[pick], l[pick]])
        sc = sur(tr["latents"][idx], embeds([tr["prompts"][k] for k in idx]), torch.as_tensor(tr["steps"][idx]), pixels=tr["pixels"][idx])
        loss = bradley_terry_loss(sc[:n], sc[n:])
        opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(sur.parameters(), 1.0); opt.step()
        if step % every == 0:
            print(vn, step, breakdown(scores(held), hw, hl, hs, hr), flush=True)
    print(vn, "train", breakdown(scores(tr), w, l, np.asarray(tr["steps"]), np.asarray(tr["rewards"])), round(time.time() - t), flush=True)
    torch.save(sur.state_dict(), OUT + f"/{vn}{SEED}.pt")
