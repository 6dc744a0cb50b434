"""Model-backed rewards (ImageReward, PickScore, HPSv2, CLIP score, LAION aesthetic, VQA attribute
binding, caption alignment), all on transformers classes; importing this package registers them.

Each loads from a hub id, a local folder (``pretrained: DIR``) or injected ``model=``/``processor=``
objects, and fails with an error saying how to point at a local copy when the hub is out of reach.
"""
from lasro.rewards.hub import aesthetic, caption_alignment, clip_similarity, hpsv2, imagereward, vqa_binding  # noqa: F401
