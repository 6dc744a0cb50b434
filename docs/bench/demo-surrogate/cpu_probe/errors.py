"""What the detector counts as wrong in 2-step samples of the shipped model (optionally with a LoRA).

Usage: errors.py [LORA_DIR]. The 345 test prompts x 2 samples (noises from seed 20000, as the final
evaluation draws them). Each asked object the detector does not find is paired with an unmatched found
one: same shape, other colour -> wrong_colour (tallied by asked -> found colour); same colour, other
shape -> wrong_shape; neither -> both_wrong; nothing left to pair -> missing. Unpaired found objects
are extra.
"""
import collections
import sys

import torch

from lasro.demo.shapes import parse_prompt
from lasro.evaluation import score_samples
from lasro.generators.few_step import FewStepGenerator
from lasro.prompts import resolve_prompts
from lasro.rewards.registry import build_reward
from lasro.rewards.shapes_detector import detect


def pair_off(left: list, right: list, same) -> int:
    """Remove pairs (a, f) with same(a, f) from both lists; returns how many; calls ``same`` in order."""
    n = 0
    for a in list(left):
        f = next((f for f in right if same(a, f)), None)
        if f is not None:
            left.remove(a)
            right.remove(f)
            n += 1
    return n


def main() -> None:
    torch.set_num_threads(1)
    gen = FewStepGenerator.from_pretrained("demo:shapes")
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

        def same_shape(a, f):
            if a[1] == f[1]:
                confusion[f"{a[0]}->{f[0]}"] += 1
                return True
            return False

        tally["wrong_colour"] += pair_off(missed, spare, same_shape)
        tally["wrong_shape"] += pair_off(missed, spare, lambda a, f: a[0] == f[0])
        tally["both_wrong"] += pair_off(missed, spare, lambda a, f: True)
        tally["missing"] += len(missed)
        tally["extra"] += len(spare)
    print({"lora": lora, "samples": len(prompts), "score": round(float(scores["reward"][2].mean()), 4),
           **tally, "colour_confusion": dict(confusion.most_common())})


if __name__ == "__main__":
    main()
