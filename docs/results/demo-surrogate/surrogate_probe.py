"""Offline probe: how well does the latent surrogate learn the demo reward from N scored samples?

collect: sample the demo generator with the demo config's exploration, score, save train + held-out sets.
fit: train fresh surrogates (variants of the surrogate config) on the first N train samples, report
held-out pair accuracy every few steps.
"""
import copy
import json
import sys
import time
import types

import numpy as np
import torch

from lasro.buffer import ranked_pairs
from lasro.config import load_config
from lasro.generators.few_step import FewStepGenerator
from lasro.surrogate import bradley_terry_loss
from lasro.trainer import LaSROTrainer, build_surrogate, surrogate_param_groups

VARIANTS = {
    "base": {},
    "frozen": {"surrogate.backbone": "frozen"},
    "full": {"surrogate.backbone": "full", "surrogate.lr_backbone": 1e-4},
    "lowlr": {"surrogate.lr_head": 1e-4, "surrogate.lr_backbone": 3e-5},
    "wd": {"surrogate.weight_decay": 0.1},
    "t200": {"surrogate.timestep": 200},
    "t500": {"surrogate.timestep": 500},
    "flip": {"_flip": True},
    "b128": {"surrogate.batch_pairs": 128},
    "head1": {"surrogate.head_layers": 1},
    "t500flip": {"surrogate.timestep": 500, "_flip": True},
    "fullflip": {"surrogate.backbone": "full", "surrogate.lr_backbone": 1e-4, "_flip": True},
    "pixel": {"surrogate.space": "pixel"},
}


def collect(out, rounds_train, rounds_held, ppr, spp, dev):
    cfg = load_config("lasro/configs/demo.yaml", [f"exploration.prompts_per_round={ppr}",
                                                   f"exploration.samples_per_prompt={spp}",
                                                   "buffer.capacity=1000000", "logging.output_dir=/tmp/probe-run",
                                                   "logging.tensorboard=false", "logging.progress=false"])
    tr = LaSROTrainer(cfg)
    sets = {}
    for name, rounds in (("train", rounds_train), ("held", rounds_held)):
        tr.buffer.__init__(10**7, 0.9)
        t = time.time()
        for r in range(rounds):
            tr.collect(r)
        b = tr.buffer
        # pixels: the uint8 decodes the buffer keeps for a pixel surrogate (cpu_probe/fit.py trains on them)
        sets[name] = {"latents": b.latents.float(), "pixels": b.pixels, "prompts": list(b.prompts),
                      "rewards": b.rewards, "steps": b.steps, "rounds": b.rounds}
        print(name, len(b), "samples", f"{time.time() - t:.1f}s", "mean reward", b.rewards.mean(), flush=True)
    torch.save(sets, out)


def fit(data, variants, sizes, steps, every, dev, seed=0):
    sets = torch.load(data, weights_only=False)
    base_cfg = load_config("lasro/configs/demo.yaml", [])
    gen = FewStepGenerator.from_config(base_cfg.model).to(dev)
    host = types.SimpleNamespace(unet=gen.unet, decode_pixels=gen.decode_pixels)
    cache = {}

    def embeds(prompts):
        miss = sorted({p for p in prompts if p not in cache})
        if miss:
            e = gen.encode_prompts(miss)
            for i, p in enumerate(miss):
                cache[p] = e.index(slice(i, i + 1))
        from lasro.generators.few_step import PromptEmbeds
        return PromptEmbeds.cat([cache[p] for p in prompts])

    held = sets["held"]
    hw, hl = ranked_pairs(held["prompts"], held["steps"], held["rewards"])
    results = []
    for size in sizes:
        tr = {k: (v[:size] if not isinstance(v, list) else v[:size]) for k, v in sets["train"].items()}
        w, l = ranked_pairs(tr["prompts"], tr["steps"], tr["rewards"])
        for vname in variants:
            ov = dict(VARIANTS[vname])
            flip = ov.pop("_flip", False)
            cfg = load_config("lasro/configs/demo.yaml", [f"{k}={v}" for k, v in ov.items()])
            torch.manual_seed(seed)
            rng = np.random.default_rng(seed)
            sur = build_surrogate(cfg, host).to(dev)
            opt = torch.optim.AdamW(surrogate_param_groups(cfg, sur), weight_decay=cfg.surrogate.weight_decay)
            n = cfg.surrogate.batch_pairs

            @torch.no_grad()
            def acc(s, win, lose, limit=None):
                sur.eval()
                idx = np.arange(len(s["prompts"]))
                scores = []
                for i in range(0, len(idx), 512):
                    j = idx[i:i + 512]
                    scores.append(sur(s["latents"][j].to(dev), embeds([s["prompts"][k] for k in j]),
                                      torch.as_tensor(s["steps"][j])).float().cpu())
                sc = torch.cat(scores).numpy()
                return float(np.mean(sc[win] > sc[lose]))

            curve = []
            t = time.time()
            for step in range(1, steps + 1):
                sur.train()
                pick = rng.integers(0, len(w), n)
                idx = np.concatenate([w[pick], l[pick]])
                lat = tr["latents"][idx].to(dev)
                if flip:
                    f = torch.from_numpy(rng.random(len(idx)) < 0.5).to(dev).view(-1, 1, 1, 1)
                    lat = torch.where(f, lat.flip(-1), lat)
                sc = sur(lat, embeds([tr["prompts"][k] for k in idx]), torch.as_tensor(tr["steps"][idx]))
                loss = bradley_terry_loss(sc[:n].float(), sc[n:].float())
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(sur.parameters(), 1.0)
                opt.step()
                if step % every == 0:
                    curve.append((step, round(acc(held, hw, hl), 4)))
            train_acc = acc(tr, w, l)
            row = {"variant": vname, "size": size, "train_pairs": int(len(w)), "held_pairs": int(len(hw)),
                   "curve": curve, "train_acc": round(train_acc, 4), "seconds": round(time.time() - t, 1)}
            print(json.dumps(row), flush=True)
            results.append(row)
    return results


if __name__ == "__main__":
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    if sys.argv[1] == "collect":
        collect(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), dev)
    else:
        fit(sys.argv[2], sys.argv[3].split(","), [int(x) for x in sys.argv[4].split(",")], int(sys.argv[5]),
            int(sys.argv[6]), dev)
