"""``ocr``: text-rendering reward with Tesseract: how close the recognised text is to the prompt's quoted text.

Score = 1 - edit_distance(target, recognised) / max(len(target), len(recognised)), in [0, 1], with
target = the text between quotes in the prompt ("a sign that says \"OPEN\"" -> OPEN; several quoted
parts are joined by spaces), or ``metadata["text"]`` when given. Case and runs of white space are
ignored unless ``case_sensitive``. A prompt with no quoted text asks for no text: 1 if nothing is
recognised, else 0. Needs the tesseract binary (Debian: ``apt-get install tesseract-ocr``) and
pytesseract (``pip install 'lasro[ocr]'``).
"""
from __future__ import annotations

import re

import numpy as np
from PIL import Image

from lasro.rewards.base import Reward, RewardError
from lasro.rewards.registry import register_reward

DESCRIPTION = "OCR (Tesseract): 1 - normalised edit distance between the prompt's quoted text and the text read"
INSTALL = ("the ocr reward needs pytesseract and the tesseract binary: `pip install 'lasro[ocr]'` and "
           "`apt-get install tesseract-ocr` (Debian/Ubuntu; `brew install tesseract` on macOS)")
# single quotes only count at word edges, so apostrophes ("the cat's toy") are not quotes
_QUOTED = re.compile(r'"([^"]+)"|“([^”]+)”|(?:(?<=\s)|^)\'([^\']+)\'(?!\w)')


def quoted_text(prompt: str) -> str:
    """The prompt's quoted parts ("...", “...” or '...'), joined by spaces; '' when there are none."""
    return " ".join(next(g for g in m.groups() if g is not None) for m in _QUOTED.finditer(prompt))


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions all cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def text_similarity(target: str, recognised: str) -> float:
    """1 - normalised edit distance, in [0, 1]; two empty strings are identical."""
    longest = max(len(target), len(recognised))
    return 1.0 - edit_distance(target, recognised) / longest if longest else 1.0


def _pytesseract():
    try:
        import pytesseract
    except ImportError as e:
        raise RewardError(INSTALL) from e
    try:
        pytesseract.get_tesseract_version()
    except Exception as e:  # noqa: BLE001 - TesseractNotFoundError or a broken install
        raise RewardError(f"{INSTALL} ({type(e).__name__}: {e})") from e
    return pytesseract


@register_reward("ocr", description=DESCRIPTION)
class OCRReward(Reward):
    """Tesseract OCR reward. ``min_side``: images are upscaled so their shorter side is at least this
    (Tesseract reads small text poorly); ``psm``: Tesseract page segmentation mode (6 = a block of text)."""

    def __init__(self, case_sensitive: bool = False, min_side: int = 256, psm: int = 6, lang: str = "eng"):
        self.case_sensitive, self.min_side, self.psm, self.lang = bool(case_sensitive), int(min_side), int(psm), lang
        self.tesseract = _pytesseract()

    def normalise(self, text: str) -> str:
        text = " ".join(text.split())
        return text if self.case_sensitive else text.lower()

    def recognise(self, image: Image.Image) -> str:
        image = image.convert("RGB")
        short = min(image.size)
        if short < self.min_side:
            scale = self.min_side / short
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
        return self.tesseract.image_to_string(image, lang=self.lang, config=f"--psm {self.psm}")

    def __call__(self, images: list[Image.Image], prompts: list[str], metadata: list[dict]):
        scores, exact = [], []
        for image, prompt, meta in zip(images, prompts, metadata):
            target = self.normalise(meta.get("text", quoted_text(prompt)))
            read = self.normalise(self.recognise(image))
            scores.append(text_similarity(target, read))
            exact.append(float(target == read))
        return np.array(scores), {"exact_match": np.array(exact)}
