"""``lasro bench suite``: methods x tasks x seeds at an equal true-reward query budget per task.

A task is a black-box reward with its held-out judges (lasro/configs/bench_suite.yaml). Each task is one
``bench compare`` under ``out/TASK`` (its results.json, results.md and curves), so a killed suite resumes
the runs it had not finished. The suite's own ``results.json`` and ``suite.md`` put every task in one table:
the paired final 1- and 2-step gains, the judges' gains, the queries LaSRO needs to reach the best black-box
baseline's final 2-step reward and the ratio, and the wall time per run.
"""
from __future__ import annotations

import json
import logging
import os

import numpy as np

from lasro.bench.compare import finish, paired_gain_cell, plan, record, summary, train_runs
from lasro.bench.compare import markdown as compare_markdown
from lasro.config import ConfigError, DEFAULT_CONFIG, read_yaml_mapping, set_assignments
from lasro.rewards import judge_labels

log = logging.getLogger(__name__)

DEFAULT_SUITE = os.path.join(os.path.dirname(DEFAULT_CONFIG), "bench_suite.yaml")


def read_suite(path: str | None) -> dict:
    """The suite file (default: the shipped one), checked for the keys the suite needs. A file that
    ``extends:`` another (a path relative to it) takes that file's keys and overrides them; its ``base:``
    adds to the other's, and a ``tasks:`` list picks tasks of the other by name."""
    path = path or DEFAULT_SUITE
    spec = read_yaml_mapping(path, "bench suite: suite file", f" (default: {DEFAULT_SUITE})")
    if spec.get("extends"):
        parent = read_suite(os.path.join(os.path.dirname(path), spec.pop("extends")))
        picked = spec.get("tasks")
        if isinstance(picked, list):
            unknown = [t for t in picked if t not in parent["tasks"]]
            if unknown:
                raise ConfigError(f"bench suite: {path!r} picks unknown task(s) {', '.join(map(str, unknown))} of the "
                                  f"suite it extends; its tasks: {', '.join(parent['tasks'])}")
            spec["tasks"] = {t: parent["tasks"][t] for t in picked}
        spec = {**parent, **spec, "base": {**(parent.get("base") or {}), **(spec.get("base") or {})}}
    tasks = spec.get("tasks")
    if not isinstance(tasks, dict) or not tasks:
        raise ConfigError(f"bench suite: {path!r} needs a 'tasks:' mapping (task -> {{about, set}}); see {DEFAULT_SUITE}")
    for name, task in tasks.items():
        if not isinstance(task, dict) or "reward" not in (task.get("set") or {}):
            raise ConfigError(f"bench suite: task '{name}' in {path!r} needs 'set: {{reward: ...}}' (its black-box "
                              "reward, and eval_rewards: its held-out judges)")
    return spec


def suite(config: str | None, suite_path: str | None = None, tasks: list[str] | None = None,
          methods: list[str] | None = None, seeds: list[int] | None = None, queries: int | None = None,
          out: str = "runs/suite", overrides: list[str] | None = None, jobs: int = 1,
          report_only: bool = False) -> dict:
    """Run every task's comparison (resuming finished runs; ``jobs`` runs at once, drawn from every task) and
    write the suite's results.json and suite.md; ``report_only``: train nothing, tabulate the finished runs."""
    spec = read_suite(suite_path)
    chosen = tasks or list(spec["tasks"])
    unknown = [t for t in chosen if t not in spec["tasks"]]
    if unknown:
        raise ConfigError(f"bench suite: unknown task(s) {', '.join(unknown)}; tasks: {', '.join(spec['tasks'])}")
    queries = int(queries or spec.get("queries") or 0)
    if queries < 1:
        raise ConfigError("bench suite needs a query budget: --queries N (or queries: in the suite file)")
    seeds = list(seeds if seeds is not None else spec.get("seeds", [0, 1, 2]))
    methods = methods or spec.get("methods")
    results = {"suite": suite_path or DEFAULT_SUITE, "config": config, "queries": queries, "seeds": seeds,
               "tasks": {}}
    os.makedirs(out, exist_ok=True)
    planned, pending = {}, []
    for name in chosen:
        task = spec["tasks"][name]
        sets = [*set_assignments(spec.get("base")), *set_assignments(task["set"]), *(overrides or [])]
        planned[name], runs = plan(config, methods, seeds, queries, os.path.join(out, name), preset=spec.get("preset"),
                                   overrides=sets)
        pending += runs
    log.info("bench suite: %d runs %s over %d task(s)", len(pending), "unfinished, not trained (report only)"
             if report_only else "to train", len(chosen))
    if report_only:
        pending = []
    for run, outcome in train_runs(pending, jobs):  # one pool for every task's runs
        record(run, outcome)
    for name in chosen:
        task, compared = spec["tasks"][name], planned[name]
        finish(compared, os.path.join(out, name))
        results["tasks"][name] = {"about": task.get("about", ""), "reward": task["set"]["reward"],
                                  "judges": judge_labels(task["set"].get("eval_rewards") or []),
                                  "rows": task_rows(compared)}
        write_task_page(os.path.join(out, name), name, results["tasks"][name], compared)
    write_suite(results, out)
    return results


def task_rows(compared: dict) -> list[dict]:
    """One row per method of a task's comparison: its summary row plus the mean wall seconds of a run."""
    rows = []
    for row in summary(compared):
        runs = compared["methods"][row["label"]]["runs"]
        walls = [r["curve"][-1]["wall_seconds"] for r in runs if r["curve"]]
        rows.append({**row, "wall_seconds": float(np.mean(walls)) if walls else None})
    return rows


def markdown(results: dict) -> str:
    """The suite's table: every task, every method."""
    lines = [f"# bench suite: {results['queries']} true-reward queries per run, seeds {results['seeds']}\n",
             "Gains: the paired final evaluation (tuned against initial model on the same held-out prompts and "
             "noises), mean ± std over seeds and how many seeds' 95% intervals lie above 0. Judges are never "
             "trained on. Queries to target: the first evaluation where the seed-mean 2-step reward reaches the "
             "best black-box baseline's final one; the ratio is that baseline's queries over these (the goal "
             "is ≥ 3×).\n",
             "| task | method | 2-step gain | 1-step gain | judges' 2-step gain | queries to best baseline | ratio "
             "| wall per run |", "|---|---|---|---|---|---|---|---|"]
    for name, task in results["tasks"].items():
        for row in task["rows"]:
            label = row["label"]
            if row["skipped"]:
                lines.append(f"| {name} | {label} | skipped: {row['skipped']} | | | | | |")
                continue
            if not row["runs"]:
                continue
            judges = "; ".join(f"{j} {paired_gain_cell(row, f'{j}/reward_2step', 3)}" for j in task["judges"]) or "–"
            reach = row.get("queries_to_target", "–")
            reach = "not reached" if reach is None else reach if reach == "–" else f"{reach:.0f}"
            if label == row.get("best_baseline"):
                reach += " (best baseline)"
            ratio = f"{row['speedup_vs_best_baseline']:.2f}×" if row.get("speedup_vs_best_baseline") else "–"
            wall = f"{row['wall_seconds']:.0f} s" if row.get("wall_seconds") is not None else "–"
            gains = " | ".join(paired_gain_cell(row, f"reward_{k}step", 3) for k in (2, 1))
            lines.append(f"| {name} | {label} | {gains} | {judges} | {reach} | {ratio} | {wall} |")
    lines.append("\nTasks:\n")
    lines += [f"- **{name}** (`{t['reward']}`; judges: {', '.join(t['judges']) or 'none'}): {t['about']}"
              for name, t in results["tasks"].items()]
    return "\n".join(lines) + "\n"


def write_task_page(task_dir: str, name: str, task: dict, compared: dict) -> None:
    """``TASK/README.md``: what the task measures, the comparison's tables, its curves and each method's
    before/after picture (first seed), by paths relative to the task folder."""
    lines = [f"# Task `{name}`: {task['about']}\n", f"Reward `{task['reward']}` (black-box to every method but "
             f"DRaFT); held-out judges: {', '.join(f'`{j}`' for j in task['judges']) or 'none'}.\n",
             compare_markdown(compared).replace("# bench compare:", "## Comparison:", 1),
             "\n![reward against true-reward queries](curves_queries.png)\n\n![reward against wall seconds]"
             "(curves_wall.png)\n", "## Before and after (2 steps, first seed; same prompts and noises)\n"]
    for label, m in compared["methods"].items():
        if m["runs"]:
            rel = os.path.join(label, f"seed-{m['runs'][0]['seed']}", "samples", "before_after_2step.png")
            if os.path.isfile(os.path.join(task_dir, rel)):
                lines.append(f"**{label}**\n\n![{label}: before and after]({rel})\n")
    with open(os.path.join(task_dir, "README.md"), "w") as f:
        f.write("\n".join(lines))


def write_suite(results: dict, out: str) -> None:
    path = os.path.join(out, "results.json")
    with open(path + ".tmp", "w") as f:
        json.dump(results, f, indent=1)
    os.replace(path + ".tmp", path)
    with open(os.path.join(out, "suite.md"), "w") as f:
        f.write(markdown(results))
