"""shapes_fidelity: clean renders score 1, and each error a 1-2-step model makes costs."""
import numpy as np
from PIL import Image, ImageFilter

from lasro import shapes
from lasro.rewards import build_reward


def scenes(n=60):
    rng = np.random.default_rng(0)
    imgs, prompts = zip(*[shapes.sample_scene(rng, "test") for _ in range(n)])
    return list(imgs), list(prompts)


def test_clean_renders_score_one_and_errors_cost():
    reward = build_reward("shapes_fidelity")
    imgs, prompts = scenes()
    clean = reward(imgs, prompts)
    assert clean.scores.min() > 0.98 and clean.info["ghost_share"].max() < 0.01
    smudged = reward([im.filter(ImageFilter.GaussianBlur(2)) for im in imgs], prompts)  # soft, blended objects
    assert smudged.scores.mean() < clean.scores.mean() - 0.1
    swapped = [p.replace("red", "@").replace("blue", "red").replace("@", "blue") for p in prompts]
    assert reward(imgs, swapped).info["prompt_colour_share"].mean() < 0.9  # colours the prompt did not ask for
    teal = Image.new("RGB", (64, 64), (255, 255, 255))
    teal.paste((40, 150, 150), (10, 10, 40, 40))  # a blue that came out teal: no palette colour
    faint = Image.new("RGB", (64, 64), (255, 255, 255))
    faint.paste((235, 180, 180), (10, 10, 40, 40))  # a ghost: a light red blend touching no solid red
    blank = Image.new("RGB", (64, 64), (255, 255, 255))
    out = reward([teal, faint, blank], ["a blue square", "a red square", "a red square"])
    assert list(out.scores) == [0.0, 0.0, 0.0] and out.info["ghost_share"][1] > 0.9
    red = Image.new("RGB", (64, 64), (255, 255, 255))
    red.paste(shapes.COLOURS["red"], (10, 10, 30, 30))
    dropped = reward([red, red], ["a red square", "a red circle and a blue square"])
    assert dropped.scores[0] == 1.0 and dropped.scores[1] == 0.5  # the blue the prompt asked for is missing
    clear = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    clear.paste((*shapes.COLOURS["red"], 255), (10, 10, 30, 30))
    assert reward([clear], ["a red square"]).scores[0] == 1.0  # transparency reads as the white background
