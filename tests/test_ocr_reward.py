"""OCR reward: quoted-text extraction and edit distance always; Tesseract on rendered text where installed."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from lasro.rewards import RewardError, build_reward
from lasro.rewards.ocr import edit_distance, quoted_text, text_similarity

needs_tesseract = pytest.mark.skipif(
    shutil.which("tesseract") is None,
    reason="the tesseract binary is not installed (apt-get install tesseract-ocr; .ci/run installs it)")


def render(text: str, size=(400, 96), font_size=40, xy=(16, 20)) -> Image.Image:
    image = Image.new("RGB", size, "white")
    ImageDraw.Draw(image).text(xy, text, fill="black", font=ImageFont.load_default(size=font_size))
    return image


@pytest.mark.parametrize("prompt, text", [
    ('a shop sign that says "OPEN"', "OPEN"),
    ("a poster with the words “Hello World” on it", "Hello World"),
    ("a mug printed with 'coffee' in blue", "coffee"),
    ("the cat's toy and the dog's bone", ""),
    ('a banner reading "big" and "sale"', "big sale"),
    ("a photo of a cat", ""),
])
def test_quoted_text(prompt, text):
    assert quoted_text(prompt) == text


def test_edit_distance_and_similarity():
    assert edit_distance("kitten", "sitting") == 3 and edit_distance("", "abc") == 3
    assert edit_distance("abc", "abc") == 0
    assert text_similarity("open", "open") == 1.0 and text_similarity("", "") == 1.0
    assert text_similarity("open", "") == 0.0 and text_similarity("open", "opem") == pytest.approx(0.75)


def test_missing_pytesseract_error_says_how_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pytesseract(name, *args, **kwargs):
        if name == "pytesseract":
            raise ImportError("No module named 'pytesseract'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pytesseract)
    with pytest.raises(RewardError, match=r"pip install 'lasro\[ocr\]'.*apt-get install tesseract-ocr"):
        build_reward("ocr")


@needs_tesseract
def test_ocr_reward_on_rendered_text():
    reward = build_reward("ocr")
    images = [render("OPEN"), render("Hello World"), render("CLOSED"), Image.new("RGB", (200, 80), "white"),
              render("SALE", size=(64, 24), font_size=8, xy=(4, 4))]
    prompts = ['a sign that says "OPEN"', 'a poster saying "hello world"', 'a sign that says "OPEN"',
               "a blank wall", 'a label with "SALE"']
    out = reward(images, prompts)
    assert out.scores.shape == (5,) and ((out.scores >= 0) & (out.scores <= 1)).all()
    assert out.scores[0] == 1.0 and out.scores[1] == 1.0  # case is ignored by default
    assert out.scores[2] < 0.5                           # wrong word
    assert out.scores[3] == 1.0                          # no text asked, none found
    assert out.scores[4] == 1.0                          # 8 px text, read only after upscaling
    unscaled = build_reward({"name": "ocr", "kwargs": {"min_side": 0}})
    assert unscaled(images[4:], prompts[4:]).scores[0] < 1.0
    assert np.array_equal(out.info["exact_match"], [1, 1, 0, 1, 1])


@needs_tesseract
def test_ocr_metadata_text_and_case_sensitivity():
    reward = build_reward({"name": "ocr", "kwargs": {"case_sensitive": True}})
    out = reward([render("Hello"), render("Hello")], ["no quotes here", 'says "hello"'], [{"text": "Hello"}, {}])
    assert out.scores[0] == 1.0 and out.scores[1] == pytest.approx(0.8)
