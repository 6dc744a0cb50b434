"""``lasro bench suite``: one task, one seed, a tiny budget on the tiny model (the CI smoke), and its resume."""
import json

import pytest
import yaml

from lasro.bench import compare as compare_module
from lasro.bench.suite import DEFAULT_SUITE, read_suite
from lasro.cli import main
from lasro.config import ConfigError
from lasro.rewards import list_rewards
from tests.test_compare import _base_config


def _suite_file(path, tasks):
    path.write_text(yaml.safe_dump({"queries": 8, "seeds": [0], "methods": ["lasro", "gors", "draft"],
                                    "base": {"prompts.final_eval": ["a red circle", "a blue square"],
                                             "prompts.final_eval_seeds": 1},
                                    "tasks": tasks}))
    return str(path)


def test_suite_runs_each_task_writes_one_table_and_resumes(tiny_dirs, tmp_path, capsys, monkeypatch):
    config = _base_config(tmp_path / "c.yaml", tiny_dirs["sdxl"])
    suite = _suite_file(tmp_path / "s.yaml", {"jpeg": {"about": "file size", "set": {
        "reward": "jpeg_compressibility", "eval_rewards": ["saturation"]}}})
    out = tmp_path / "suite"
    args = ["bench", "suite", config, "--suite", suite, "--out", str(out)]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    (row_lasro, row_gors, row_draft) = results["tasks"]["jpeg"]["rows"]
    assert results["tasks"]["jpeg"]["judges"] == ["saturation"]
    assert row_gors["best_baseline"] == "gors" and row_gors["wall_seconds"] > 0
    assert "not differentiable" in row_draft["skipped"]
    task = json.loads((out / "jpeg" / "results.json").read_text())  # the task's own comparison
    assert task["base"]["reward"] == "jpeg_compressibility" and task["base"]["eval_rewards"] == ["saturation"]
    assert task["base"]["prompts"]["final_eval"] == ["a red circle", "a blue square"]
    table = (out / "suite.md").read_text()
    assert "| jpeg | lasro |" in table and "| jpeg | gors |" in table and "saturation " in table
    assert "(best baseline)" in table and "| jpeg | draft | skipped:" in table
    assert "| jpeg | lasro |" in capsys.readouterr().out
    page = (out / "jpeg" / "README.md").read_text()  # the task's own page
    assert page.startswith("# Task `jpeg`: file size") and "## Comparison:" in page and "curves_queries.png" in page
    assert "(lasro/seed-0/samples/before_after_2step.png)" in page
    assert (out / "jpeg" / "lasro" / "seed-0" / "samples" / "before_after_2step.png").is_file()
    # rerun: every run is finished, none is trained again, and DRaFT's refusal is kept (not tried again)

    def run_one(cfg):
        raise AssertionError(f"{cfg.algorithm.method}: a finished run (or a refused method) was trained again")

    monkeypatch.setattr(compare_module, "run_one", run_one)
    assert main(args) == 0
    rows = json.loads((out / "results.json").read_text())["tasks"]["jpeg"]["rows"]
    assert rows[1]["runs"] == 1 and "not differentiable" in rows[2]["skipped"]
    assert main(args + ["--report-only"]) == 0 and "| jpeg | draft | skipped:" in (out / "suite.md").read_text()


def test_suite_file_errors_name_the_fix(tmp_path, capsys):
    with pytest.raises(ConfigError, match="needs a 'tasks:' mapping"):
        read_suite(_suite_file(tmp_path / "a.yaml", {}))
    with pytest.raises(ConfigError, match="task 'x' .* needs 'set: {reward: ...}'"):
        read_suite(_suite_file(tmp_path / "b.yaml", {"x": {"about": "no reward"}}))
    assert main(["bench", "suite", "--suite", _suite_file(tmp_path / "c.yaml", {"jpeg": {"set": {
        "reward": "jpeg_compressibility"}}}), "--tasks", "nope", "--out", str(tmp_path / "o")]) == 2
    assert "unknown task(s) nope; tasks: jpeg" in capsys.readouterr().err


def test_every_shipped_task_has_judges_and_registered_rewards():
    spec = read_suite(DEFAULT_SUITE)
    assert len(spec["tasks"]) >= 4
    for name, task in spec["tasks"].items():
        assert task["about"] and task["set"]["eval_rewards"], name
        for reward in [task["set"]["reward"], *task["set"]["eval_rewards"]]:
            assert reward in {r[0] for r in list_rewards()}, (name, reward)


def test_suite_with_jobs_pools_the_runs_of_every_task(tiny_dirs, tmp_path):
    """--jobs 2: one pool trains both tasks' runs at once; each lands in its own task's comparison."""
    config = _base_config(tmp_path / "c.yaml", tiny_dirs["sdxl"])
    suite = _suite_file(tmp_path / "s.yaml", {name: {"about": name, "set": {"reward": reward}}
                                              for name, reward in (("jpeg", "jpeg_compressibility"),
                                                                   ("vivid", "saturation"))})
    out = tmp_path / "suite"
    assert main(["bench", "suite", config, "--suite", suite, "--methods", "gors", "--jobs", "2", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    for name, reward in (("jpeg", "jpeg_compressibility"), ("vivid", "saturation")):
        (run,) = json.loads((out / name / "results.json").read_text())["methods"]["gors"]["runs"]
        assert run["output_dir"] == str(out / name / "gors" / "seed-0") and run["final_eval"]
        assert results["tasks"][name]["reward"] == reward and results["tasks"][name]["rows"][0]["runs"] == 1


def test_the_ablation_suite_extends_the_suite_with_lasro_s_tuned_settings(tmp_path):
    from lasro.bench.compare import PRESETS
    from lasro.bench.tune import nested

    spec = read_suite(DEFAULT_SUITE.replace("bench_suite.yaml", "bench_suite_ablations.yaml"))
    parent = read_suite(DEFAULT_SUITE)
    assert list(spec["tasks"]) == ["compressibility", "learned_judge", "detector"]
    assert spec["tasks"]["detector"] == parent["tasks"]["detector"] and spec["preset"] == "ablations_config"
    assert set(parent["base"]) < set(spec["base"])  # the suite's base, plus LaSRO's settings
    with open(PRESETS["tuned"]) as f:
        tuned = yaml.safe_load(f)["methods"]["lasro"]
    added = nested({k: v for k, v in spec["base"].items() if k not in parent["base"]})
    assert added == {k: v for k, v in tuned.items() if k != "algorithm"}, "ablations drifted from the tuned lasro"
    child = tmp_path / "child.yaml"
    child.write_text(yaml.safe_dump({"extends": DEFAULT_SUITE, "tasks": ["detector", "nope"]}))
    with pytest.raises(ConfigError, match="picks unknown task.s. nope of the suite it extends"):
        read_suite(str(child))
