"""``lasro bench step``: the cost of one LaSRO generator step against a bare 2-step LoRA
forward+backward on the same batch (the floor any reward-backprop method pays)."""
from __future__ import annotations

import math
import statistics
import sys

import torch

from lasro.bench.timing import lasro_trainer, peak_memory_mib, timed


def bench_step(cfg, repeats: int = 3, warmup: int = 1) -> dict:
    with lasro_trainer(cfg) as tr:
        dev = tr.acc.device
        prompts = tr.train_prompts[: cfg.optim.batch_size]
        prompts = (prompts * cfg.optim.batch_size)[: cfg.optim.batch_size]
        emb = tr.embeds(prompts)
        shape = tr.gen.latent_shape(len(prompts))

        def step(loss_fn, batch):
            tr.gen_opt.zero_grad(set_to_none=True)
            loss, _ = loss_fn(batch)
            tr.acc.backward(loss)
            tr.gen_opt.step()

        def lasro_round(k: int) -> list[float]:
            """k generator steps as a round takes them (one round's reused inputs, if so configured)."""
            with tr.method.round_of_steps() as (loss_fn, batches):
                return [timed(lambda: step(loss_fn, prompts if batches is None else batches[i][0]), dev)
                        for i in range(k)]

        def bare_step():
            tr.gen_opt.zero_grad(set_to_none=True)
            noise, eps = torch.randn(shape, device=dev), torch.randn(shape, device=dev)
            with tr.acc.autocast():
                x = tr.gen.sample(tr.unet, noise, emb, renoise=[eps])
            tr.acc.backward(sum(o.float().square().mean() for o in x))
            tr.gen_opt.step()

        # a step's cost depends on where it falls in a round (its first step needs no round-start reference
        # pass; with reused inputs the later ones need none either) and, with the anchor every k steps, in the
        # anchor's cycle: time whole rounds covering whole cycles and take the mean (else the median)
        per_round = cfg.algorithm.generator_steps
        k = math.lcm(per_round, cfg.lasro.anchor_every)
        cycles = k > 1
        for _ in range(warmup):
            lasro_round(1)
            bare_step()
        n_rounds = -(-repeats // k) * k // per_round
        rounds = [lasro_round(per_round) for _ in range(n_rounds)]
        t_lasro = [t for r in rounds for t in r]
        t_bare = [timed(bare_step, dev) for _ in range(repeats)]
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        lasro_s = statistics.mean(t_lasro) if cycles else statistics.median(t_lasro)
        bare_s = statistics.median(t_bare)
        return {
            "model": cfg.model.pretrained, "dtype": cfg.model.dtype, "device": str(dev),
            "resolution": tr.gen.resolution, "batch": len(prompts), "steps": len(tr.gen.timesteps),
            "unet_params_m": round(count(tr.base_unet) / 1e6, 2),
            "surrogate_params_m": round(count(tr.method.base_surrogate) / 1e6, 2),
            "regularizer": cfg.lasro.regularizer, "anchor_every": cfg.lasro.anchor_every,
            "round_inputs": cfg.lasro.round_inputs, "generator_steps": per_round, "repeats": len(t_lasro),
            "lasro_step_s": round(lasro_s, 4), "bare_2step_lora_fwd_bwd_s": round(bare_s, 4),
            "ratio": round(lasro_s / bare_s, 3),
            **({"first_step_s": round(statistics.median(r[0] for r in rounds), 4),
                "later_steps_s": round(statistics.median(t for r in rounds for t in r[1:]), 4)}
               if per_round > 1 else {}),
            "peak_memory_mib": round(peak_memory_mib(dev), 1),
            "torch_threads": torch.get_num_threads(), "python": sys.version.split()[0],
        }
