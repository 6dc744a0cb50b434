"""``lasro bench compare``: methods x seeds at an equal query budget, on the tiny model."""
import json

import pytest
import yaml

from lasro.cli import main
from lasro.bench.compare import PRESETS, _merge, check_no_clash, markdown, summary, variants
from lasro.config import ConfigError, read_config_data
from lasro.methods import build_config


def _base_config(path, tiny_dir, methods=None):
    data = {"reward": "jpeg_compressibility", "model": {"pretrained": tiny_dir}, "lora": {"rank": 2, "alpha": 4},
            "surrogate": {"batch_pairs": 2, "lora_rank": 2, "lora_alpha": 2},
            "exploration": {"samples_per_prompt": 2, "prompts_per_round": 2},
            "algorithm": {"generator_steps": 1},
            "lasro": {"pretrain_collect_rounds": 0, "pretrain_surrogate_steps": 2, "surrogate_steps": 1},
            "optim": {"batch_size": 2, "lr": 1e-3},
            "prompts": {"train": ["a red circle", "a blue square"], "eval": ["a red square"], "eval_seeds": 1}}
    if methods:
        data["methods"] = methods
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_compare_two_methods_two_seeds_writes_results_table_and_curves(tiny_dirs, tmp_path, capsys):
    config = _base_config(tmp_path / "c.yaml", tiny_dirs["sdxl"], methods={"gors": {"gors": {"top_fraction": 0.5}}})
    out = tmp_path / "cmp"
    assert main(["bench", "compare", config, "--methods", "lasro,gors,draft", "--seeds", "0,1", "--queries", "16",
                 "--eval-every-queries", "8", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results["methods"]) == ["lasro", "gors", "draft"] and results["queries"] == 16
    assert "not differentiable" in results["methods"]["draft"]["skipped"] and not results["methods"]["draft"]["runs"]
    assert results["methods"]["gors"]["overrides"]["gors"] == {"top_fraction": 0.5}
    for label in ("lasro", "gors"):
        runs = results["methods"][label]["runs"]
        assert [r["seed"] for r in runs] == [0, 1]
        for run in runs:
            points = run["curve"]
            assert set(points[0]) == {"round", "queries", "wall_seconds", "reward_1step", "reward_2step"}
            assert points[-1]["queries"] >= 16 and all(p["queries"] < 16 for p in points[:-1])  # stops at the budget
    # gors spends 8 queries a round: evaluated at 0, 8 and 16
    assert [p["queries"] for p in results["methods"]["gors"]["runs"][0]["curve"]] == [0, 8, 16]
    rows = {r["label"]: r for r in results["summary"]}
    assert rows["lasro"]["best_baseline"] == "gors"
    initial = sum(r["curve"][0]["reward_2step"] for m in results["methods"].values() for r in m["runs"]) / 4
    assert rows["lasro"]["initial_2step"] == pytest.approx(initial)
    table = (out / "results.md").read_text()
    assert "| gors | 2 | 16 |" in table and "±" in table and "| draft | skipped:" in table
    for png in ("curves_queries.png", "curves_wall.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert "| lasro | 2 |" in capsys.readouterr().out


def test_compare_with_jobs_trains_runs_in_parallel_with_the_same_results(tiny_dirs, tmp_path):
    """--jobs 2: the runs train in two worker processes, are recorded in seed order, DRaFT's refusal still
    reads as skipped, and each run's curve matches the one trained alone."""
    config = _base_config(tmp_path / "c.yaml", tiny_dirs["sdxl"])
    common = ["--methods", "gors,draft", "--seeds", "0,1", "--queries", "8", "--eval-every-queries", "8"]
    assert main(["bench", "compare", config, *common, "--out", str(tmp_path / "one")]) == 0
    assert main(["bench", "compare", config, *common, "--jobs", "2", "--out", str(tmp_path / "two")]) == 0
    one, two = (json.loads((tmp_path / d / "results.json").read_text())["methods"] for d in ("one", "two"))
    assert "not differentiable" in two["draft"]["skipped"] and not two["draft"]["runs"]
    assert [r["seed"] for r in two["gors"]["runs"]] == [0, 1]
    for a, b in zip(one["gors"]["runs"], two["gors"]["runs"]):
        assert [p["reward_2step"] for p in b["curve"]] == pytest.approx([p["reward_2step"] for p in a["curve"]],
                                                                        abs=1e-4)
        assert b["output_dir"].endswith(f"gors/seed-{b['seed']}")


@pytest.mark.parametrize("skip", [False, True])
def test_compare_runs_the_paired_final_evaluation_unless_told_not_to(tiny_dirs, tmp_path, skip):
    config = _base_config(tmp_path / "c.yaml", tiny_dirs["sdxl"])
    out = tmp_path / "cmp"
    args = ["bench", "compare", config, "--methods", "lasro", "--seeds", "3", "--queries", "8", "--out", str(out),
            "--set", "prompts.final_eval=[a red circle, a green triangle]", "--set", "prompts.final_eval_seeds=2"]
    assert main(args + (["--no-final-eval"] if skip else [])) == 0
    results = json.loads((out / "results.json").read_text())
    (run,) = results["methods"]["lasro"]["runs"]
    table = (out / "results.md").read_text()
    if skip:
        assert run["final_eval"] is None and "Paired final evaluation" not in table
        assert not (out / "lasro" / "seed-3" / "final_eval.json").exists()
        return
    final = run["final_eval"]
    assert final["samples"] == 4 and final["seed"] == 20_003
    assert final == json.loads((out / "lasro" / "seed-3" / "final_eval.json").read_text())
    (row,) = results["summary"]
    gain = final["gain"]["reward_2step"]
    assert row["gain_reward_2step"] == pytest.approx((gain["mean"], 0.0))
    assert row["gain_reward_2step_seeds_above_zero"] == int(gain["ci95"][0] > 0)
    assert row["final_reward_2step"][0] == pytest.approx(final["tuned"]["reward_2step_mean"])
    # one seed: the gain with its own 95% interval, not a std of one value
    assert row["gain_reward_2step_ci95"] == gain["ci95"]
    assert "## Paired final evaluation" in table
    assert f"{gain['mean']:+.4f} [{gain['ci95'][0]:+.4f}, {gain['ci95'][1]:+.4f}]" in table


def test_ablation_preset_names_valid_variants(tmp_path):
    with open(PRESETS["ablations"]) as f:
        table = yaml.safe_load(f)["methods"]
    found = {v.label: v for v in variants(table, None)}
    assert list(found) == ["lasro", "on_policy", "frozen_surrogate", "two_step_only", "pixel_surrogate"]
    assert all(v.method == "lasro" for v in found.values())
    for v in found.values():  # every variant is a valid config
        build_config({k: val for k, val in v.overrides.items()})
    assert found["frozen_surrogate"].overrides["lasro"]["surrogate_steps"] == 0
    assert found["frozen_surrogate"].overrides["exploration"]["t1_range"] == [300, 700]
    assert found["pixel_surrogate"].overrides["surrogate"]["space"] == "pixel"
    # every other variant names the paper's latent surrogate, so a pixel CONFIG (the demo) keeps the contrast
    assert all(found[k].overrides["surrogate"]["space"] == "latent" for k in found if k != "pixel_surrogate")
    with pytest.raises(ConfigError, match="unknown method or variant 'reinforce'"):
        variants(table, ["reinforce"])


def test_a_set_that_a_preset_variant_would_override_is_an_error_not_lost():
    with open(PRESETS["tuned_unguarded"]) as f:
        chosen = variants(yaml.safe_load(f)["methods"], ["lasro", "gors"])
    with pytest.raises(ConfigError, match=r"--set optim.lr=1e-4 \(variant 'gors' sets 0.001\)"):
        check_no_clash(chosen, ["reward=saturation", "optim.lr=1e-4"])
    # keys no variant sets, and a variant's own value repeated, are fine
    check_no_clash(chosen, ["reward=saturation", "gors.timesteps=last", "ppo.clip_range=0.1"])
    check_no_clash(chosen[1:], ["optim.lr=1e-3"])
    check_no_clash(chosen, ["optim={batch_size: 4}"])  # a mapping merges key by key: no leaf clashes


def test_config_ablation_preset_switches_parts_off_on_the_config_as_it_stands():
    with open(PRESETS["ablations_config"]) as f:
        table = yaml.safe_load(f)["methods"]
    found = {v.label: v for v in variants(table, None)}
    assert list(found) == ["lasro", "on_policy", "frozen_surrogate", "two_step_only", "latent_surrogate"]
    assert found["lasro"].overrides == {"algorithm": {"method": "lasro"}}  # CONFIG unchanged
    # only latent_surrogate names a surrogate space: the demo's pixel surrogate stays pixel in the others
    assert [k for k, v in found.items() if "surrogate" in v.overrides] == ["latent_surrogate"]
    demo = read_config_data(None)
    cfgs = {label: build_config(_merge(demo, v.overrides)) for label, v in found.items()}
    assert [label for label, cfg in cfgs.items() if cfg.surrogate.space != "pixel"] == ["latent_surrogate"]
    assert cfgs["on_policy"].exploration.t1_range is None and cfgs["on_policy"].buffer.recency_decay == 0.0
    assert cfgs["frozen_surrogate"].lasro.surrogate_steps == 0
    assert cfgs["two_step_only"].algorithm.c1 == 0.0


def test_summary_reports_unreached_targets():
    def run(*rewards):
        return {"curve": [{"round": i, "queries": 10 * i, "wall_seconds": i, "reward_1step": r, "reward_2step": r}
                          for i, r in enumerate(rewards)]}
    results = {"methods": {"lasro": {"method": "lasro", "skipped": None, "runs": [run(0, 2, 3), run(0, 1, 3)]},
                           "ppo": {"method": "ppo", "skipped": None, "runs": [run(0, 1, 2), run(0, 2, 2)]},
                           "dpo": {"method": "dpo", "skipped": None, "runs": [run(0, 0, 1), run(0, 0, 0)]},
                           # reads the reward's gradient: an upper reference, never the baseline to beat
                           "draft": {"method": "draft", "skipped": None, "runs": [run(0, 5, 9)]},
                           # a variant of the reference's own method is not a baseline either
                           "lasro_variant": {"method": "lasro", "skipped": None, "runs": [run(0, 4, 8)]}}}
    rows = {r["label"]: r for r in summary(results)}
    assert rows["lasro"]["best_baseline"] == "ppo" and rows["lasro"]["target_2step"] == 2
    # seed means: lasro 0, 1.5, 3 -> reaches 2 at 20 queries; ppo 0, 1.5, 2 -> at 20; dpo never
    assert rows["lasro"]["queries_to_target"] == 20 and rows["ppo"]["queries_to_target"] == 20
    assert rows["lasro"]["speedup_vs_best_baseline"] == 1.0
    assert rows["dpo"]["queries_to_target"] is None and rows["dpo"]["speedup_vs_best_baseline"] is None
    assert rows["lasro"]["reward_2step"] == (3.0, 0.0)


def test_summary_computes_no_queries_to_target_when_the_best_baseline_does_not_beat_the_untuned_model():
    def run(*rewards, start=0):
        return {"curve": [{"round": i, "queries": start + 10 * i, "wall_seconds": i, "reward_1step": r,
                           "reward_2step": r}
                          for i, r in enumerate(rewards)]}
    results = {"queries": 20, "seeds": [0], "eval_every_queries": 10,
               "methods": {"lasro": {"method": "lasro", "skipped": None, "runs": [run(1.0, 1.2, start=10)]},
                           "ppo": {"method": "ppo", "skipped": None, "runs": [run(1.0, 0.9, 0.8)]},
                           "dpo": {"method": "dpo", "skipped": None, "runs": [run(1.0, 0.5, 0.9)]}}}
    rows = {r["label"]: r for r in summary(results)}
    # every run's round-0 evaluation is the untuned model's (lasro's sits at 10 queries)
    assert rows["lasro"]["initial_2step"] == 1.0 and rows["lasro"]["best_baseline"] == "dpo"
    assert rows["lasro"]["best_baseline_2step"] == 0.9 and rows["lasro"]["target_beats_initial"] is False
    assert rows["lasro"]["target_2step"] is None
    assert all("queries_to_target" not in r and r["speedup_vs_best_baseline"] is None for r in rows.values())
    table = markdown(results)
    assert "final 2-step reward 0.9; untuned model 1)" in table and "queries to reach it are not computed" in table
    assert "| lasro | 1 | 20 | 1.2 | 1.2 | – | – |" in table  # one seed: no "± 0"


def test_untuned_model_is_every_run_s_round_0_evaluation_even_after_pre_training_queries():
    """An ablation table holds only LaSRO variants, whose first evaluation sits after pre-training."""
    def run(*rewards):
        return {"curve": [{"round": 5 * i, "queries": 100 + 10 * i, "wall_seconds": i, "reward_1step": r,
                           "reward_2step": r} for i, r in enumerate(rewards)]}
    results = {"queries": 120, "seeds": [0], "eval_every_queries": 10,
               "methods": {"lasro": {"method": "lasro", "skipped": None, "runs": [run(1.0, 0.8, 0.7)]},
                           "on_policy": {"method": "lasro", "skipped": None, "runs": [run(1.0, 1.0, 1.0)]}}}
    (row, _) = summary(results)
    assert row["initial_2step"] == 1.0 and row["best_baseline"] == "on_policy"
    assert row["target_beats_initial"] is False and row["target_2step"] is None
