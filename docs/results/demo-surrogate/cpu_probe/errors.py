"""What the detector counts as wrong in 2-step samples of the shipped model (optionally with a LoRA).

Usage: errors.py [LORA_DIR]. The 345 test prompts x 2 samples (noises from seed 20000, as the final
evaluation draws them). Each asked object the detector does not find is paired with an unmatched found
one: same shape, other colour -> wrong_colour (tallied by asked -> found colour); same colour, other
shape -> wrong_shape; neither -> both_wrong; nothing left to pair -> missing. Unpaired found objects
are extra.
"""
import collections
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import gen  # noqa: E402  (the probes' shared demo generator)
from lasro.demo.shapes import parse_prompt  # noqa: E402
from lasro.evaluation import score_samples  # noqa: E402
from lasro.prompts import resolve_prompts  # noqa: E402
from lasro.rewards.registry import build_reward  # noqa: E402
from lasro.rewards.shapes_detector import detect  # noqa: E402


def pair_off(left: list, right: list, same) -> list[tuple]:
    """Remove pairs (a, f) with same(a, f) from both lists, first match in order; returns the pairs."""
    pairs = []
    for a in list(left):
        f = next((f for f in right if same(a, f)), None)
        if f is not None:
            left.remove(a)
            right.remove(f)
            pairs.append((a, f))
    return pairs


def main() -> None:
    torch.set_num_threads(1)
    lora = sys.argv[1] if len(sys.argv) > 1 else None
    if lora:
        gen.pipe.load_lora_weights(lora)
    prompts = resolve_prompts("shapes:test", "prompts") * 2
    scores, images = score_samples(gen, build_reward("shapes_detector"), prompts, seed=20000, steps=(2,))
    tally, confusion = collections.Counter(), collections.Counter()
    for image, prompt in zip(images[2], prompts):
        asked, found = parse_prompt(prompt), detect(image)
        tally["asked"] += sum(asked.values())
        tally["found"] += sum(found.values())
        tally["images_with_extra_objects"] += sum(found.values()) > sum(asked.values())
        tally["matched"] += sum(min(n, found[k]) for k, n in asked.items())
        missed, spare = list((asked - found).elements()), list((found - asked).elements())
        wrong_colour = pair_off(missed, spare, lambda a, f: a[1] == f[1])
        tally["wrong_colour"] += len(wrong_colour)
        confusion.update(f"{a[0]}->{f[0]}" for a, f in wrong_colour)
        tally["wrong_shape"] += len(pair_off(missed, spare, lambda a, f: a[0] == f[0]))
        tally["both_wrong"] += len(pair_off(missed, spare, lambda a, f: True))
        tally["missing"] += len(missed)
        tally["extra"] += len(spare)
    print({"lora": lora, "samples": len(prompts), "score": round(float(scores["reward"][2].mean()), 4),
           **tally, "colour_confusion": dict(confusion.most_common())})


if __name__ == "__main__":
    main()
