"""``lasro bench step``: the cost of one LaSRO generator step against a bare 2-step LoRA
forward+backward on the same batch (the floor any reward-backprop method pays)."""
from __future__ import annotations

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

        def lasro_step():
            tr.gen_opt.zero_grad(set_to_none=True)
            loss, _ = tr.method.generator_loss(prompts)
            tr.acc.backward(loss)
            tr.gen_opt.step()

        def bare_step():
            tr.gen_opt.zero_grad(set_to_none=True)
            noise, eps = torch.randn(shape, device=dev), torch.randn(shape, device=dev)
            with tr.acc.autocast():
                x = tr.gen.sample(tr.unet, noise, emb, renoise=[eps])
            tr.acc.backward(sum(o.float().square().mean() for o in x))
            tr.gen_opt.step()

        for _ in range(warmup):
            lasro_step()
            bare_step()
        # with the anchor every k steps, one step's cost depends on where it falls: time whole cycles of k
        # and take the mean (else the median)
        k = cfg.lasro.anchor_every
        cycles = k > 1
        t_lasro = [timed(lasro_step, dev) for _ in range(-(-repeats // k) * k if cycles else repeats)]
        t_bare = [timed(bare_step, dev) for _ in range(repeats)]
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        lasro_s = statistics.mean(t_lasro) if cycles else statistics.median(t_lasro)
        bare_s = statistics.median(t_bare)
        return {
            "model": cfg.model.pretrained, "dtype": cfg.model.dtype, "device": str(dev),
            "resolution": tr.gen.resolution, "batch": len(prompts), "steps": len(tr.gen.timesteps),
            "unet_params_m": round(count(tr.base_unet) / 1e6, 2),
            "surrogate_params_m": round(count(tr.method.base_surrogate) / 1e6, 2),
            "regularizer": cfg.lasro.regularizer, "anchor_every": cfg.lasro.anchor_every, "repeats": repeats,
            "lasro_step_s": round(lasro_s, 4), "bare_2step_lora_fwd_bwd_s": round(bare_s, 4),
            "ratio": round(lasro_s / bare_s, 3), "peak_memory_mib": round(peak_memory_mib(dev), 1),
            "torch_threads": torch.get_num_threads(), "python": sys.version.split()[0],
        }
