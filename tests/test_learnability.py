"""The fast learnability check: on the shipped demo model and a small budget, every method raises an easy
reward above its 95% interval (`lasro bench learnability` does it at a real budget). A tiny random-init
model is no place for this: its rewards barely vary between samples, and gains of +-0.001 flipped sign with
any setting."""
import pytest
import yaml

from lasro.bench.compare import PRESETS, _leaves
from lasro.bench.learnability import learnability, markdown

FAST = ["prompts.final_eval=shapes:test:12", "prompts.final_eval_seeds=2", "prompts.eval=shapes:test:4",
        "prompts.eval_seeds=1", "exploration.prompts_per_round=8", "lasro.pretrain_collect_rounds=1",
        "lasro.pretrain_surrogate_steps=100", "lasro.surrogate_steps=30"]


def tuned_settings(method: str) -> list[str]:
    """GORS's settings from the unguarded tuning (``--preset tuned_unguarded``, lr 1e-3), at which it raised
    both easy rewards on 3 seeds: at the demo's lr its uniform-timestep loss moves too little for 256
    queries. Every other method learns at the demo's own settings."""
    if method != "gors":
        return []
    with open(PRESETS["tuned_unguarded"]) as f:
        tuned = yaml.safe_load(f)["methods"]["gors"]
    return [f"{k}={v}" for k, v in _leaves(tuned).items() if k != "algorithm.method"]


@pytest.mark.parametrize("method", ["lasro", "ppo", "dpo", "gors", "draft"])
def test_every_method_raises_saturation_on_the_demo_model(tmp_path, method):
    rows = learnability(None, ["saturation"], [method], queries=256, out=str(tmp_path / "out"),
                        overrides=FAST + tuned_settings(method))
    assert len(rows) == 1 and rows[0]["method"] == method, rows
    assert rows[0]["learns"], markdown(rows)  # the 2-step gain's 95% interval lies above zero
