import json, os, sys, time, types
import numpy as np, torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lasro.buffer import ranked_pairs
from lasro.surrogate import PixelSurrogate, bradley_terry_loss
import models

torch.set_num_threads(int(sys.argv[6]) if len(sys.argv) > 6 else 2)
sets = torch.load(sys.argv[1], weights_only=False)
from common import D, embeds, gen

dp = gen.decode_pixels
V = {
    "base": lambda: PixelSurrogate(dp, D, 32, 3),
    "wide": lambda: PixelSurrogate(dp, D, 64, 3),
    "wide4": lambda: PixelSurrogate(dp, D, 64, 4),
    "tok": lambda: models.TokenAttnPixel(dp, D),
    "toksm": lambda: models.TokenAttnPixel(dp, D, sigmoid=False),
    "tf": lambda: models.TinyTransformerPixel(dp, D),
    "ens4": lambda: models.Ensemble([PixelSurrogate(dp, D, 32, 3) for _ in range(4)]),
    "flip": lambda: PixelSurrogate(dp, D, 32, 3),
    "flip4": lambda: PixelSurrogate(dp, D, 32, 3),
    "tf16": lambda: models.TinyTransformerPixel(dp, D, grid=16),
}
held = sets["held"]
hw, hl = ranked_pairs(held["prompts"], held["steps"], held["rewards"])
variants, sizes, steps, every = sys.argv[2].split(","), [int(x) for x in sys.argv[3].split(",")], int(sys.argv[4]), int(sys.argv[5])
lr = float(sys.argv[7]) if len(sys.argv) > 7 else 1e-3
for size in sizes:
    tr = {k: v[:size] for k, v in sets["train"].items()}
    w, l = ranked_pairs(tr["prompts"], tr["steps"], tr["rewards"])
    for vn in variants:
        torch.manual_seed(0); rng = np.random.default_rng(0)
        sur = V[vn]()
        opt = torch.optim.AdamW(sur.parameters(), lr=lr, weight_decay=0.0)
        n = 32
        @torch.no_grad()
        def acc(s, win, lose):
            sur.eval(); sc = []
            for i in range(0, len(s["prompts"]), 512):
                j = np.arange(i, min(i + 512, len(s["prompts"])))
                sc.append(sur(s["latents"][j], embeds([s["prompts"][k] for k in j]), torch.as_tensor(s["steps"][j]), pixels=s["pixels"][j]))
            sc = torch.cat(sc).numpy()
            return float(np.mean(sc[win] > sc[lose]))
        curve = []; t = time.time()
        for step in range(1, steps + 1):
            sur.train()
            pick = rng.integers(0, len(w), n)
            idx = np.concatenate([w[pick], l[pick]])
            px = tr["pixels"][idx]
            if vn.startswith("flip"):
                f = torch.from_numpy(rng.random(len(idx)) < 0.5).view(-1, 1, 1, 1)
                px = torch.where(f, px.flip(-1), px)
            if vn == "flip4":
                f = torch.from_numpy(rng.random(len(idx)) < 0.5).view(-1, 1, 1, 1)
                px = torch.where(f, px.flip(-2), px)
            sc = sur(tr["latents"][idx], embeds([tr["prompts"][k] for k in idx]), torch.as_tensor(tr["steps"][idx]), pixels=px)
            if hasattr(sur, "member_scores"):
                ms = sur.member_scores(tr["latents"][idx], embeds([tr["prompts"][k] for k in idx]), torch.as_tensor(tr["steps"][idx]), pixels=tr["pixels"][idx])
                loss = sum(bradley_terry_loss(m[:n], m[n:]) for m in ms)
            else:
                loss = bradley_terry_loss(sc[:n], sc[n:])
            opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(sur.parameters(), 1.0); opt.step()
            if step % every == 0:
                curve.append((step, round(acc(held, hw, hl), 4)))
        row = {"variant": vn, "size": size, "lr": lr, "curve": curve, "train_acc": round(acc(tr, w, l), 4),
               "params": sum(p.numel() for p in sur.parameters()), "seconds": round(time.time() - t, 1)}
        print(json.dumps(row), flush=True)
