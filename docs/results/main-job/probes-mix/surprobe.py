"""Held-out pair accuracy of pixel-surrogate variants trained by Bradley-Terry on the same base-model samples
(surdata.py). Usage: SURDATA=surdata.npz NTRAIN=512 python surprobe.py "override;override|override" STEPS [r|d|f]."""
import os, sys, time, numpy as np, torch
from lasro.generators import FewStepGenerator
from lasro.methods.registry import load_config
from lasro.surrogates import build_surrogate, bradley_terry_loss
d = np.load(os.environ.get("SURDATA", "surdata.npz")); prompts = list(d["prompts"])
n_train = int(os.environ.get("NTRAIN", 512)) * 4
variants = [s.split(";") if s else [] for s in sys.argv[1].split("|")]
steps_n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
rtype = sys.argv[3] if len(sys.argv) > 3 else "r"
base = ["surrogate.space=pixel", "surrogate.coordinates=false", "surrogate.lr_head=1e-3", "surrogate.batch_pairs=32"]
cfg0 = load_config(None, base)
gen = FewStepGenerator.from_config(cfg0.model)
pix = torch.from_numpy(np.concatenate([d["k1"], d["k2"]])).permute(0, 3, 1, 2).contiguous()
rew = np.concatenate([d[rtype + "1"], d[rtype + "2"]]); stp = np.concatenate([np.ones(len(prompts), int), np.full(len(prompts), 2)])
allp = prompts + prompts
with torch.no_grad():
    emb_all = gen.encode_prompts(allp)
idx_train = np.concatenate([np.arange(n_train), len(prompts) + np.arange(n_train)])
def pairs(idx):
    out = []
    for k in (1, 2):
        for g0 in range(0, len(prompts), 4):
            grp = [i for i in idx if stp[i] == k and g0 <= (i % len(prompts)) < g0 + 4]
            for a in range(len(grp)):
                for b in range(a + 1, len(grp)):
                    i, j = grp[a], grp[b]
                    if abs(rew[i] - rew[j]) > 0:
                        out.append((i, j) if rew[i] > rew[j] else (j, i))
    return np.array(out)
tr = pairs(set(idx_train.tolist()))
ho_idx = set(np.concatenate([np.arange(512 * 4, len(prompts)), len(prompts) + np.arange(512 * 4, len(prompts))]).tolist())
ho = pairs(ho_idx)
print("pairs train", len(tr), "held-out", len(ho))
for v in variants:
    cfg = load_config(None, base + v)
    torch.manual_seed(0)
    sur = build_surrogate(cfg.surrogate, gen)
    from lasro.surrogates import surrogate_param_groups
    opt = torch.optim.AdamW(surrogate_param_groups(cfg.surrogate, sur), weight_decay=cfg.surrogate.weight_decay)
    rng = np.random.default_rng(0); t0 = time.time(); B = cfg.surrogate.batch_pairs
    def score(ix):
        ix = torch.as_tensor(ix)
        e = emb_all.index(ix)
        return sur(torch.zeros(len(ix), 4, 16, 16), e, torch.as_tensor(stp[ix]), pixels=pix[ix])  # latents unused: pixels given
    accs = []
    for s in range(steps_n):
        b = tr[rng.integers(0, len(tr), B)]
        sc = score(np.concatenate([b[:, 0], b[:, 1]]))
        loss = bradley_terry_loss(sc[:B].float(), sc[B:].float())
        opt.zero_grad(); loss.backward(); opt.step()
        if (s + 1) % (steps_n // 4) == 0:
            with torch.no_grad():
                sw = torch.cat([score(ho[i:i + 512, 0]) for i in range(0, len(ho), 512)])
                sl = torch.cat([score(ho[i:i + 512, 1]) for i in range(0, len(ho), 512)])
            ok = (sw > sl).float().numpy(); k2 = stp[ho[:, 0]] == 2
            accs.append((s + 1, round(float(ok.mean()), 3), round(float(ok[k2].mean()), 3)))
    print(v, "acc (step, all, 2step):", accs, f"{time.time() - t0:.0f}s", flush=True)
