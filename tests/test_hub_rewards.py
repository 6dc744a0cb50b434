"""Model-backed rewards end to end on tiny random-init models of the real classes (no hub, no network).

Checkpoint conversions (open_clip -> CLIPModel for HPSv2, BLIP ViT -> BlipVisionModel for ImageReward)
are checked against small reference modules written here with the original code bases' module names
and forward passes, so a wrong split, transpose or rename shows up as different features.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from lasro.rewards import RewardError, build_reward
from lasro.rewards.hub.caption_alignment import CaptionAlignment, content_words, word_overlap
from lasro.rewards.hub.clip_similarity import PickScore
from lasro.rewards.hub.hpsv2 import HPSv2, HPSv21
from lasro.rewards.hub.imagereward import (ImageReward, ImageRewardModel, SCORE_MEAN, SCORE_STD,
                                           convert_imagereward_state_dict, image_processor)
from lasro.rewards.hub.aesthetic import LaionAesthetic
from lasro.rewards.hub.mlp_head import MLPScoreHead
from lasro.rewards.hub.open_clip_keys import open_clip_to_transformers
from lasro.rewards.hub.vqa_binding import VQAAttributeBinding, attribute_noun_phrases

WIDTH, HEADS, LAYERS, IMAGE, PATCH = 32, 4, 2, 32, 8


def _images(n=3):
    rng = np.random.default_rng(0)
    sizes = [(64, 48), (40, 40), (50, 70)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes[:n]]


PROMPTS = ["a red book and a blue car", "a cat", "a green vase next to a yellow dog"]


def _count_calls(module):
    """Number of forward calls of ``module`` and the first input's shape, recorded by a hook."""
    seen = {"calls": 0, "shape": None}

    def hook(_m, args, kwargs):
        seen["calls"] += 1
        x = args[0] if args else next(iter(kwargs.values()))
        seen["shape"] = tuple(x.shape)

    module.register_forward_pre_hook(hook, with_kwargs=True)
    return seen


# --- tiny CLIP ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip_tokenizer():
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1  # eos is the largest id
    return CLIPTokenizer(vocab=vocab, merges=[])


def _clip_config(tok):
    from transformers import CLIPConfig

    return CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=WIDTH, intermediate_size=64, num_hidden_layers=LAYERS,
                         num_attention_heads=HEADS, max_position_embeddings=77, hidden_act="gelu",
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id),
        vision_config=dict(hidden_size=WIDTH, intermediate_size=64, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                           image_size=IMAGE, patch_size=PATCH, hidden_act="gelu"),
        projection_dim=16)


@pytest.fixture(scope="module")
def clip_parts(clip_tokenizer):
    from transformers import CLIPModel, CLIPProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    torch.manual_seed(0)
    model = CLIPModel(_clip_config(clip_tokenizer)).eval()
    images = CLIPImageProcessorPil(size={"shortest_edge": IMAGE}, crop_size={"height": IMAGE, "width": IMAGE})
    return model, CLIPProcessor(image_processor=images, tokenizer=clip_tokenizer)


def test_clip_score_from_local_folder(tmp_path, clip_parts):
    model, processor = clip_parts
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    reward = build_reward({"name": "clip_score", "kwargs": {"pretrained": str(tmp_path), "device": "cpu",
                                                             "batch_size": 2}})
    assert reward.needs_weights
    out = reward(_images(), PROMPTS)
    assert out.scores.shape == (3,) and np.isfinite(out.scores).all()
    assert np.allclose(out.scores, 100 * np.maximum(out.info["cosine"], 0))
    assert (np.abs(out.info["cosine"]) <= 1 + 1e-6).all() and np.ptp(out.info["cosine"]) > 0


def test_clip_score_differentiable_form_matches_and_has_a_gradient(clip_parts):
    model, processor = clip_parts
    reward = build_reward({"name": "clip_score", "kwargs": {"model": model, "processor": processor, "device": "cpu"}})
    assert reward.is_differentiable and not build_reward({"name": "pickscore", "kwargs": {
        "model": model, "processor": processor, "device": "cpu"}}).is_differentiable
    rng = np.random.default_rng(1)
    for side in (IMAGE, 2 * IMAGE):  # no resize: exact; a resize: bicubic in torch vs PIL, close
        arrays = rng.integers(0, 256, (3, side, side, 3), dtype=np.uint8)
        pixels = torch.from_numpy(arrays).permute(0, 3, 1, 2).float().div(255).requires_grad_(True)
        scores = reward.differentiable(pixels, PROMPTS)
        expected = reward([Image.fromarray(a) for a in arrays], PROMPTS).scores
        np.testing.assert_allclose(scores.detach().numpy(), expected, atol=1e-3 if side == IMAGE else 1.0)
        # the score clips negative cosines at 0 (no gradient there); the cosine itself reaches the pixels
        cosine = reward.fn.cosine_from_pixel_values(reward.fn.differentiable_pixel_values(pixels), PROMPTS)
        cosine.sum().backward()
        assert pixels.grad.abs().sum() > 0


def test_pickscore_uses_injected_model_and_its_logit_scale(clip_parts):
    model, processor = clip_parts
    seen = _count_calls(model.vision_model)
    reward = PickScore(model=model, processor=processor, device="cpu", batch_size=2)
    assert reward.model is model
    scores, info = reward(_images(), PROMPTS, [{}] * 3)
    assert seen["calls"] == 2 and seen["shape"] == (1, 3, IMAGE, IMAGE)  # batches of 2 + 1, resized and cropped
    assert np.allclose(scores, model.logit_scale.exp().item() * info["cosine"], atol=1e-5)
    # the score follows the prompt: the same image scores differently against different prompts
    image = _images(1) * 2
    assert not np.isclose(*reward(image, ["a red book", "zzzz qqq"], [{}, {}])[0])


# --- HPSv2: open_clip checkpoint conversion -----------------------------------------------------


class _OCBlock(nn.Module):
    """open_clip's ResidualAttentionBlock (no layer scale), sequence-first as open_clip's older versions."""

    def __init__(self, d, heads):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads)
        self.mlp = nn.Sequential(OrderedDict(c_fc=nn.Linear(d, 64), gelu=nn.GELU(), c_proj=nn.Linear(64, d)))

    def forward(self, x, mask=None):
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class _OCTransformer(nn.Module):
    def __init__(self, d, heads, layers):
        super().__init__()
        self.resblocks = nn.ModuleList(_OCBlock(d, heads) for _ in range(layers))

    def forward(self, x, mask=None):
        x = x.permute(1, 0, 2)
        for block in self.resblocks:
            x = block(x, mask)
        return x.permute(1, 0, 2)


class _OCVisual(nn.Module):
    def __init__(self, d, heads, layers, out):
        super().__init__()
        n = (IMAGE // PATCH) ** 2 + 1
        self.conv1 = nn.Conv2d(3, d, PATCH, PATCH, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(d) * 0.1)
        self.positional_embedding = nn.Parameter(torch.randn(n, d) * 0.1)
        self.ln_pre, self.ln_post = nn.LayerNorm(d), nn.LayerNorm(d)
        self.transformer = _OCTransformer(d, heads, layers)
        self.proj = nn.Parameter(torch.randn(d, out) * 0.1)

    def forward(self, pixels):
        x = self.conv1(pixels).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_embedding.expand(x.shape[0], 1, -1), x], 1) + self.positional_embedding
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x[:, 0]) @ self.proj


class _OpenCLIP(nn.Module):
    """open_clip's CLIP with module names as in its state dicts: x @ proj, argmax pooling at the eot token."""

    def __init__(self, vocab, d=WIDTH, heads=HEADS, layers=LAYERS, out=16, ctx=77):
        super().__init__()
        self.visual = _OCVisual(d, heads, layers, out)
        self.transformer = _OCTransformer(d, heads, layers)
        self.token_embedding = nn.Embedding(vocab, d)
        self.positional_embedding = nn.Parameter(torch.randn(ctx, d) * 0.1)
        self.ln_final = nn.LayerNorm(d)
        self.text_projection = nn.Parameter(torch.randn(d, out) * 0.1)
        self.logit_scale = nn.Parameter(torch.tensor(2.0))
        self.register_buffer("attn_mask", torch.full((ctx, ctx), float("-inf")).triu(1), persistent=False)
        for p in self.parameters():  # non-trivial LayerNorm and bias values, so a mix-up cannot cancel out
            if p.dim() == 1:
                p.data.add_(torch.randn_like(p) * 0.1)

    def encode_text(self, ids):
        n = ids.shape[1]
        x = self.token_embedding(ids) + self.positional_embedding[:n]
        x = self.ln_final(self.transformer(x, self.attn_mask[:n, :n]))
        return x[torch.arange(x.shape[0]), ids.argmax(-1)] @ self.text_projection


@pytest.fixture(scope="module")
def open_clip_model(clip_tokenizer):
    torch.manual_seed(1)
    return _OpenCLIP(len(clip_tokenizer)).eval()


def test_open_clip_conversion_gives_the_same_features(open_clip_model, clip_tokenizer):
    from transformers import CLIPModel

    converted, unconverted = open_clip_to_transformers({"module." + k: v for k, v in
                                                        open_clip_model.state_dict().items()})
    assert unconverted == []
    model = CLIPModel(_clip_config(clip_tokenizer)).eval()
    missing, unexpected = model.load_state_dict(converted, strict=False)
    assert [k for k in missing if not k.endswith("position_ids")] == [] and unexpected == []
    pixels = torch.randn(2, 3, IMAGE, IMAGE)
    ids = clip_tokenizer(["a red book", "two cats on a mat"], padding=True, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(model.get_image_features(pixel_values=pixels).pooler_output,
                              open_clip_model.visual(pixels), atol=1e-5)
        assert torch.allclose(model.get_text_features(input_ids=ids).pooler_output,
                              open_clip_model.encode_text(ids), atol=1e-5)


def test_open_clip_conversion_reports_unknown_keys():
    _, unconverted = open_clip_to_transformers({"visual.attn_pool.query": torch.zeros(1),
                                                "transformer.resblocks.0.ls_1.gamma": torch.zeros(1)})
    assert sorted(unconverted) == ["transformer.resblocks.0.ls_1.gamma", "visual.attn_pool.query"]


@pytest.mark.parametrize("cls, filename", [(HPSv2, "HPS_v2_compressed.pt"), (HPSv21, "HPS_v2.1_compressed.pt")])
def test_hpsv2_loads_open_clip_checkpoint_and_scores_like_open_clip(tmp_path, cls, filename, open_clip_model,
                                                                     clip_parts, clip_tokenizer):
    torch.save({"state_dict": open_clip_model.state_dict(), "epoch": 1}, tmp_path / filename)
    _, processor = clip_parts
    reward = cls(pretrained=str(tmp_path), clip_config=_clip_config(clip_tokenizer), processor=processor, device="cpu")
    images = _images()
    scores, info = reward(images, PROMPTS, [{}] * 3)
    pixels = processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
    ids = clip_tokenizer(PROMPTS, padding=True, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        img = nn.functional.normalize(open_clip_model.visual(pixels), dim=-1)
        txt = nn.functional.normalize(open_clip_model.encode_text(ids), dim=-1)
    assert np.allclose(scores, (img * txt).sum(-1).numpy(), atol=1e-5)  # HPSv2's score: the cosine


def test_hpsv2_folder_without_checkpoint_names_the_file(tmp_path, clip_parts):
    with pytest.raises(RewardError, match=r"HPS_v2\.1_compressed\.pt.*--local-dir"):
        HPSv21(pretrained=str(tmp_path), processor=clip_parts[1], device="cpu")


def test_checkpoints_with_pickled_objects_are_refused(tmp_path, clip_parts, clip_tokenizer):
    import argparse

    torch.save({"state_dict": {}, "args": argparse.Namespace(lr=1)}, tmp_path / "HPS_v2_compressed.pt")
    with pytest.raises(RewardError, match="weights_only=True.*safetensors"):
        HPSv2(pretrained=str(tmp_path), clip_config=_clip_config(clip_tokenizer), processor=clip_parts[1],
              device="cpu")


# --- LAION aesthetic -----------------------------------------------------------------------------


def test_laion_aesthetic_head_from_file_on_normalised_embedding(tmp_path, clip_parts):
    from safetensors.torch import save_file

    model, processor = clip_parts
    torch.manual_seed(2)
    head = MLPScoreHead(model.config.projection_dim).eval()
    save_file(head.state_dict(), str(tmp_path / "head.safetensors"))
    reward = LaionAesthetic(pretrained=str(tmp_path / "head.safetensors"), model=model, processor=processor,
                            device="cpu", batch_size=2)
    images = _images()
    scores, _ = reward(images, ["ignored"] * 3, [{}] * 3)
    pixels = processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        emb = model.get_image_features(pixel_values=pixels).pooler_output
        expected = head(emb / emb.norm(dim=-1, keepdim=True))
    assert scores.shape == (3,) and np.allclose(scores, expected.numpy(), atol=1e-5)


# --- ImageReward --------------------------------------------------------------------------------


class _BlipViT(nn.Module):
    """BLIP's timm-style ViT (cls_token, pos_embed, blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp}, norm)."""

    def __init__(self, d=WIDTH, heads=HEADS, layers=LAYERS):
        super().__init__()
        self.heads = heads
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, d, PATCH, PATCH)
        self.cls_token = nn.Parameter(torch.randn(1, 1, d) * 0.1)
        self.pos_embed = nn.Parameter(torch.randn(1, (IMAGE // PATCH) ** 2 + 1, d) * 0.1)
        self.blocks = nn.ModuleList()
        for _ in range(layers):
            block = nn.Module()
            block.norm1, block.norm2 = nn.LayerNorm(d, eps=1e-6), nn.LayerNorm(d, eps=1e-6)
            block.attn = nn.Module()
            block.attn.qkv, block.attn.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            block.mlp = nn.Module()
            block.mlp.fc1, block.mlp.fc2 = nn.Linear(d, 64), nn.Linear(64, d)
            self.blocks.append(block)
        self.norm = nn.LayerNorm(d, eps=1e-6)

    def forward(self, pixels):
        x = self.patch_embed.proj(pixels).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
        b, n, d = x.shape
        for blk in self.blocks:
            qkv = blk.attn.qkv(blk.norm1(x)).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
            att = (qkv[0] @ qkv[1].transpose(-2, -1) * (d // self.heads) ** -0.5).softmax(-1)
            x = x + blk.attn.proj((att @ qkv[2]).transpose(1, 2).reshape(b, n, d))
            x = x + blk.mlp.fc2(nn.functional.gelu(blk.mlp.fc1(blk.norm2(x))))
        return self.norm(x)


BERT_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "yes", "no", "a", "an", "red", "blue", "green",
              "yellow", "book", "car", "cat", "dog", "vase", "next", "to", "and", "?", "photo", "of"]


@pytest.fixture(scope="module")
def bert_tokenizer():
    from transformers import BertTokenizer

    return BertTokenizer(vocab={w: i for i, w in enumerate(BERT_WORDS)})


def _blip_configs():
    from transformers import BlipTextConfig, BlipVisionConfig

    vision = BlipVisionConfig(hidden_size=WIDTH, intermediate_size=64, num_hidden_layers=LAYERS,
                              num_attention_heads=HEADS, image_size=IMAGE, patch_size=PATCH, layer_norm_eps=1e-6)
    text = BlipTextConfig(vocab_size=len(BERT_WORDS), hidden_size=WIDTH, intermediate_size=64,
                          num_hidden_layers=LAYERS, num_attention_heads=HEADS, encoder_hidden_size=WIDTH,
                          bos_token_id=BERT_WORDS.index("[DEC]"), sep_token_id=3, pad_token_id=0)
    return vision, text


def test_imagereward_checkpoint_conversion_and_score(tmp_path, bert_tokenizer):
    from transformers import BlipTextModel

    torch.manual_seed(3)
    vit, (vision, text) = _BlipViT().eval(), _blip_configs()
    text_encoder, head = BlipTextModel(text, add_pooling_layer=False).eval(), MLPScoreHead(WIDTH).eval()
    state = {f"blip.visual_encoder.{k}": v for k, v in vit.state_dict().items()}
    state.update({f"blip.text_encoder.{k}": v for k, v in text_encoder.state_dict().items()})
    state["blip.text_encoder.embeddings.position_ids"] = torch.arange(512)[None]  # saved by BLIP's med.py
    state.update({f"mlp.{k}": v for k, v in head.state_dict().items()})
    state["blip.vision_proj.weight"] = torch.zeros(4, WIDTH)  # BLIP towers ImageReward does not use
    torch.save(state, tmp_path / "ImageReward.pt")

    converted, skipped = convert_imagereward_state_dict(state)
    assert skipped == ["blip.text_encoder.embeddings.position_ids", "blip.vision_proj.weight"]
    reward = ImageReward(pretrained=str(tmp_path), configs=(vision, text), tokenizer=bert_tokenizer,
                         processor=image_processor(IMAGE), device="cpu", batch_size=2)
    pixels = torch.randn(2, 3, IMAGE, IMAGE)
    with torch.no_grad():
        assert torch.allclose(reward.model.vision_model(pixel_values=pixels).last_hidden_state, vit(pixels),
                              atol=1e-5)
    seen = _count_calls(reward.model.text_encoder)
    images = _images()
    scores, _ = reward(images, PROMPTS, [{}] * 3)
    assert seen["calls"] == 2 and seen["shape"] == (1, 35)  # padded to ImageReward's 35 tokens
    # the same pipeline by hand from the reference ViT: [CLS] feature -> head -> (x - mean) / std
    px = image_processor(IMAGE)(images=images, return_tensors="pt")["pixel_values"]
    tok = bert_tokenizer(PROMPTS, padding="max_length", max_length=35, return_tensors="pt")
    with torch.no_grad():
        feats = text_encoder(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"],
                             encoder_hidden_states=vit(px)).last_hidden_state[:, 0]
        expected = (head(feats) - SCORE_MEAN) / SCORE_STD
    assert np.allclose(scores, expected.numpy(), atol=1e-4)


def test_imagereward_checkpoint_with_missing_keys_is_an_error(tmp_path, bert_tokenizer):
    torch.save({"mlp.layers.0.weight": torch.zeros(1024, WIDTH)}, tmp_path / "ImageReward.pt")
    with pytest.raises(RewardError, match="does not fit ImageReward"):
        ImageReward(pretrained=str(tmp_path), configs=_blip_configs(), tokenizer=bert_tokenizer, device="cpu")


def test_imagereward_injected_model_is_used(bert_tokenizer):
    model = ImageRewardModel(*_blip_configs())
    reward = ImageReward(model=model, tokenizer=bert_tokenizer, device="cpu")
    assert reward.model is model and reward.processor.crop_size["height"] == IMAGE  # processor sized from the model
    scores, _ = reward(_images(2), PROMPTS[:2], [{}, {}])
    assert scores.shape == (2,) and np.isfinite(scores).all()


# --- T2I-CompBench attribute binding ------------------------------------------------------------


@pytest.mark.parametrize("prompt, phrases", [
    ("a green bench and a red car", ["a green bench", "a red car"]),
    ("A blue backpack, a brown cow and a white vase.", ["A blue backpack", "a brown cow", "a white vase"]),
    ("a metallic car on a wooden table", ["a metallic car", "a wooden table"]),
    ("a round clock next to a square table", ["a round clock", "a square table"]),
    ("a red apple to the left of a green pear", ["a red apple", "a green pear"]),
    ("a man with a red hat", ["a man", "a red hat"]),
    ("a bonsai tree", ["a bonsai tree"]),
    ("an orange handbag and an android phone", ["an orange handbag", "an android phone"]),
])
def test_attribute_noun_phrases(prompt, phrases):
    assert attribute_noun_phrases(prompt) == phrases


class _FakeVQA(VQAAttributeBinding):
    """Answers from a table instead of a model, to check the questions asked and the product."""

    answers = {"a red book?": 0.9, "a blue car?": 0.5, "a cat?": 0.2, "the book is red?": 0.7}

    def __init__(self):
        self.asked = []
        super().__init__(model=nn.Identity(), processor=object(), device="cpu")

    def yes_probabilities(self, images, questions):
        self.asked.append(list(questions))
        return np.array([self.answers[q] for q in questions])


def test_vqa_binding_multiplies_p_yes_over_phrases():
    reward = _FakeVQA()
    scores, info = reward(_images(2) + _images(1), ["a red book and a blue car", "a cat", "anything"],
                          [{}, {}, {"phrases": ["the book is red"]}])
    assert reward.asked == [["a red book?", "a blue car?", "a cat?", "the book is red?"]]
    assert np.allclose(scores, [0.45, 0.2, 0.7])
    assert info["num_phrases"].tolist() == [2, 1, 1] and np.allclose(info["min_p_yes"], [0.5, 0.2, 0.7])


@pytest.fixture(scope="module")
def blip_processor(bert_tokenizer):
    from transformers import BlipProcessor
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    return BlipProcessor(image_processor=BlipImageProcessorPil(size={"height": IMAGE, "width": IMAGE}),
                         tokenizer=bert_tokenizer)


def _blip_config():
    from transformers import BlipConfig

    vision, text = _blip_configs()
    return BlipConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=16)


def test_vqa_binding_with_tiny_blip_vqa(tmp_path, blip_processor):
    from transformers import BlipForQuestionAnswering

    torch.manual_seed(4)
    BlipForQuestionAnswering(_blip_config()).save_pretrained(tmp_path)
    blip_processor.save_pretrained(tmp_path)
    reward = build_reward({"name": "vqa_attribute_binding", "kwargs": {"pretrained": str(tmp_path), "device": "cpu"}})
    images = _images()
    out = reward(images, PROMPTS, [{}] * 3)
    assert out.scores.shape == (3,) and ((out.scores > 0) & (out.scores < 1)).all()
    vqa = reward.fn
    p = vqa.yes_probabilities([images[0], images[0]], ["a red book?", "a blue car?"])
    assert ((p > 0) & (p < 1)).all() and np.isclose(out.scores[0], p.prod(), atol=1e-6)


# --- caption alignment --------------------------------------------------------------------------


def test_word_overlap():
    assert content_words("Two red cats on the mat.") == {"two", "red", "cat", "mat"}
    assert word_overlap("a red cat", "a photo of a red cat sitting") == (1.0, pytest.approx(0.8))
    assert word_overlap("a red cat", "a blue dog")[0] == 0.0
    assert word_overlap("a red cat", "a red dog")[0] == 0.5


def test_caption_alignment_with_tiny_blip_captioner(blip_processor):
    from transformers import BlipForConditionalGeneration

    torch.manual_seed(5)
    model = BlipForConditionalGeneration(_blip_config())
    seen = _count_calls(model.vision_model)
    reward = CaptionAlignment(model=model, processor=blip_processor, device="cpu", max_new_tokens=5)
    captions = reward.captions(_images(2))
    assert seen["calls"] == 1 and seen["shape"] == (2, 3, IMAGE, IMAGE)
    assert len(captions) == 2 and all(isinstance(c, str) for c in captions)
    scores, info = reward(_images(), PROMPTS, [{}] * 3)
    assert ((0 <= scores) & (scores <= 1)).all() and set(info) == {"f1"}


def test_caption_alignment_scores_the_caption_against_the_prompt():
    class Fixed(CaptionAlignment):
        def captions(self, images):
            return ["a red book on a table", "a dog"][: len(images)]

    reward = Fixed(model=nn.Identity(), processor=object(), device="cpu")
    scores, _ = reward(_images(2), ["a red book and a blue car", "a cat"], [{}, {}])
    assert np.allclose(scores, [0.5, 0.0])


# --- without weights: the error says how to point at a local copy -------------------------------

HUB_REWARDS = ["imagereward", "pickscore", "hpsv2", "hpsv2.1", "clip_score", "laion_aesthetic",
               "vqa_attribute_binding", "caption_alignment"]


@pytest.mark.parametrize("name", HUB_REWARDS)
def test_offline_hub_id_error_says_how_to_use_a_local_copy(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RewardError) as e:
        build_reward(name)
    message = str(e.value)
    assert "huggingface-cli download" in message and "--local-dir DIR" in message and ": DIR" in message
    assert "/" in message.split("huggingface-cli download ")[1].split(" ")[0]  # names the hub id


@pytest.mark.parametrize("name", HUB_REWARDS)
def test_missing_local_folder_error(name, tmp_path):
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(RewardError, match="no such") as e:
        build_reward({"name": name, "kwargs": {"pretrained": missing}} if name != "laion_aesthetic" else
                     {"name": name, "kwargs": {"clip_pretrained": missing}})
    message = str(e.value)
    assert missing in message and "--local-dir DIR" in message
    assert f"download {missing}" not in message  # suggests the reward's default hub id, not the path
