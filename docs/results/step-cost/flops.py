"""FLOPs of SDXL-Turbo's UNet forward and of its encoder parts (conv_in + the first N down blocks; 3 = all of them
and the mid block, the paper's surrogate backbone) at 512 x 512, batch 1, counted on the meta device (no compute,
no memory). Run from the repository root: .venv/bin/python docs/results/step-cost/flops.py"""
import torch
from torch.utils.flop_counter import FlopCounterMode
from lasro.generators.tiny import build_unet
with torch.device("meta"):
    unet = build_unet((320, 640, 1280), 64, (768, 1280), (5, 10, 20), layers_per_block=2, transformer_layers=(1, 2, 10), time_embed_dim=256)
    x = torch.randn(1, 4, 64, 64); t = torch.tensor([999]); hs = torch.randn(1, 77, 2048)
    add = {"text_embeds": torch.randn(1, 1280), "time_ids": torch.randn(1, 6)}
def count(fn):
    with FlopCounterMode(display=False) as m:
        fn()
    return m.get_total_flops()
full = count(lambda: unet(x, t, hs, added_cond_kwargs=add))
def enc(n):
    def f():
        emb = unet.time_embedding(unet.time_proj(t).to(x.dtype))
        aug = unet.get_aug_embed(emb=emb, encoder_hidden_states=hs, added_cond_kwargs=add)
        emb = emb + aug
        h = unet.conv_in(x)
        for b in unet.down_blocks[:n]:
            h, _ = b(h, emb, encoder_hidden_states=hs) if getattr(b, "has_cross_attention", False) else b(h, emb)
        if n == 3:
            h = unet.mid_block(h, emb, encoder_hidden_states=hs)
    return f
print(f"UNet forward: {full / 1e9:.1f} GFLOPs")
for n in (1, 2, 3):
    e = count(enc(n)); print(f"encoder, {n} down block(s){' and the mid block' if n == 3 else ''}: {e / 1e9:.1f} GFLOPs, {e / full:.3f} of a UNet forward")
