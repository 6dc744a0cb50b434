"""open_clip CLIP state dict -> transformers ``CLIPModel`` state dict.

open_clip's ``CLIP`` (non-custom text tower, as in ViT-H-14) uses ``nn.MultiheadAttention`` with one
packed ``in_proj`` (q, k, v stacked on dim 0) and applies its projections as ``x @ proj``; transformers
uses separate q/k/v linears and ``nn.Linear`` projections (``x @ W.T``), hence the split and transposes.
Layer-scale (``ls_1``/``ls_2``), attention pooling and custom text towers are not handled: such keys
are reported as unconverted rather than dropped silently.
"""
from __future__ import annotations

import re

import torch

# open_clip name -> transformers name for everything that is a plain rename
_RENAMES = [
    (r"^token_embedding\.weight$", "text_model.embeddings.token_embedding.weight"),
    (r"^positional_embedding$", "text_model.embeddings.position_embedding.weight"),
    (r"^ln_final\.(weight|bias)$", r"text_model.final_layer_norm.\1"),
    (r"^logit_scale$", "logit_scale"),
    (r"^visual\.class_embedding$", "vision_model.embeddings.class_embedding"),
    (r"^visual\.positional_embedding$", "vision_model.embeddings.position_embedding.weight"),
    (r"^visual\.conv1\.weight$", "vision_model.embeddings.patch_embedding.weight"),
    (r"^visual\.ln_pre\.(weight|bias)$", r"vision_model.pre_layrnorm.\1"),
    (r"^visual\.ln_post\.(weight|bias)$", r"vision_model.post_layernorm.\1"),
]
_BLOCK = re.compile(r"^(visual\.)?transformer\.resblocks\.(\d+)\.(.+)$")
_BLOCK_PARTS = {
    "ln_1": "layer_norm1", "ln_2": "layer_norm2", "attn.out_proj": "self_attn.out_proj",
    "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
}
_IGNORED = {"attn_mask"}  # a causal-mask buffer older open_clip versions saved


def open_clip_to_transformers(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Convert an open_clip CLIP state dict; returns (transformers state dict, keys not converted)."""
    out: dict[str, torch.Tensor] = {}
    unconverted: list[str] = []
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key in _IGNORED:
            continue
        if key == "text_projection":
            out["text_projection.weight"] = value.t().contiguous()
            continue
        if key == "visual.proj":
            out["visual_projection.weight"] = value.t().contiguous()
            continue
        block = _BLOCK.match(key)
        if block:
            tower = "vision_model" if block.group(1) else "text_model"
            prefix, rest = f"{tower}.encoder.layers.{block.group(2)}.", block.group(3)
            if rest.startswith("attn.in_proj_"):
                kind = rest.rsplit("_", 1)[1]  # weight or bias
                for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                    out[f"{prefix}self_attn.{name}.{kind}"] = part.contiguous()
                continue
            module, _, param = rest.rpartition(".")
            if module in _BLOCK_PARTS:
                out[f"{prefix}{_BLOCK_PARTS[module]}.{param}"] = value
                continue
        else:
            for pattern, target in _RENAMES:
                if re.match(pattern, key):
                    out[re.sub(pattern, target, key)] = value
                    break
            else:
                unconverted.append(key)
            continue
        unconverted.append(key)
    return out, unconverted

