"""``lasro bench tune``: the same small tuning budget for every method, so that a comparison measures the
methods and not how long each was tuned. A grid (``lasro/configs/bench_tuning.yaml`` by default) gives each
method the same number of settings (3 learning rates x 2 values of its main coefficient), all trained on a
*tuning* reward that is not one the comparisons report, at the same query budget and seed; the setting with
the highest paired 2-step gain on the final evaluation is kept. Writes the grid's comparison (results.json,
results.md), ``tuning.md`` (every setting's gains) and ``tuned.yaml``, a ``methods:`` table that
``lasro bench compare --tuned`` reads."""
from __future__ import annotations

import itertools
import os

import yaml

from lasro.bench.compare import compare
from lasro.bench.learnability import final_gains, gain_cell
from lasro.config import DEFAULT_CONFIG, ConfigError, read_yaml_mapping, set_assignments

DEFAULT_GRID = os.path.join(os.path.dirname(DEFAULT_CONFIG), "bench_tuning.yaml")


def nested(dotted: dict) -> dict:
    """{"optim.lr": 1e-3} -> {"optim": {"lr": 1e-3}}."""
    out: dict = {}
    for key, value in dotted.items():
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def grid_table(grid: dict) -> dict:
    """label -> overrides for every method's settings: the product of its keys' value lists."""
    table = {}
    for method, axes in grid.items():
        if not isinstance(axes, dict) or not all(isinstance(v, list) and v for v in axes.values()):
            raise ConfigError(f"bench tune: grid.{method} must map dotted config keys to non-empty lists of values")
        keys = list(axes)
        for values in itertools.product(*(axes[k] for k in keys)):
            setting = dict(zip(keys, values))
            label = method + "".join(f" {k.split('.')[-1]}={v}" for k, v in setting.items())
            table[label] = {"algorithm": {"method": method}, **nested(setting), "_setting": setting}
    return table


def read_grid(path: str | None) -> dict:
    path = path or DEFAULT_GRID
    spec = read_yaml_mapping(path, "bench tune: grid file", f" (default: {DEFAULT_GRID})")
    for key in ("reward", "queries", "grid"):
        if key not in spec:
            raise ConfigError(f"bench tune: grid file {path!r} needs a '{key}:' entry (see {DEFAULT_GRID})")
    return spec


def tune(config: str | None, grid_path: str | None = None, out: str = "runs/tune",
         overrides: list[str] | None = None, seed: int | None = None, jobs: int = 1) -> dict:
    """Run the grid (``jobs`` settings at once); return {"rows": every setting's gains, "tuned": method -> chosen overrides}."""
    spec = read_grid(grid_path)
    table = grid_table(spec["grid"])
    settings = {label: v.pop("_setting") for label, v in table.items()}
    base = set_assignments(spec.get("base"))
    seeds = [spec.get("seed", 0) if seed is None else seed]
    results = compare(config, list(table), seeds, int(spec["queries"]), out, table=table,
                      overrides=[*base, f"reward={spec['reward']}", *(overrides or [])], jobs=jobs)
    rows, best = [], {}
    for label, entry in results["methods"].items():
        run = (entry["runs"] or [None])[0]
        final = (run or {}).get("final_eval") or {}
        row = {"label": label, "method": entry["method"], "setting": settings[label], "skipped": entry["skipped"],
               **final_gains(final), "judges": judge_gains(final), "guard": final.get("judge_guard")}
        rows.append(row)
        score = row.get("gain_2step")
        if score is not None and (entry["method"] not in best or score > best[entry["method"]]["gain_2step"]):
            best[entry["method"]] = row
    tuned = {m: table[r["label"]] for m, r in best.items()}
    for r in rows:
        r["chosen"] = best.get(r["method"]) is r
    write_tuning(out, spec, rows, tuned, seeds[0])
    return {"rows": rows, "tuned": tuned}


def judge_gains(final_eval: dict) -> dict:
    """Each held-out judge's paired 2-step gain (mean) in a run's final evaluation."""
    return {k.split("/")[0]: g["mean"] for k, g in (final_eval.get("gain") or {}).items()
            if k.endswith("/reward_2step")}


def markdown(spec: dict, rows: list[dict]) -> str:
    lines = [f"# Equal tuning on `{spec['reward']}`: {spec['queries']} true-reward queries per setting",
             "", "| method | setting | 2-step gain [95%] | 1-step gain [95%] | judges, 2-step gain | judge guard "
             "| chosen |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        setting = ", ".join(f"{k}={v}" for k, v in r["setting"].items())
        if r["skipped"]:
            lines.append(f"| {r['method']} | {setting} | skipped: {r['skipped'][:80]} | | | | |")
            continue
        judges = ", ".join(f"{j} {g:+.3f}" for j, g in (r.get("judges") or {}).items()) or "–"
        guard = (f"stopped at round {r['guard']['round']}, kept round {r['guard']['kept_round']}"
                 if r.get("guard") else "held" if r.get("judges") else "–")
        lines.append(f"| {r['method']} | {setting} | {gain_cell(r, 2)} | {gain_cell(r, 1)} | {judges} | {guard} | "
                     f"{'**yes**' if r['chosen'] else ''} |")
    return "\n".join(lines) + "\n"


def write_tuning(out: str, spec: dict, rows: list[dict], tuned: dict, seed: int) -> None:
    with open(os.path.join(out, "tuning.md"), "w") as f:
        f.write(markdown(spec, rows))
    header = (f"# Chosen by `lasro bench tune`: the highest paired 2-step gain of each method's grid on the tuning\n"
              f"# reward {spec['reward']} ({spec['queries']} queries, seed {seed}); use with\n"
              f"# `lasro bench compare CONFIG --tuned {os.path.join(out, 'tuned.yaml')}`.\n")
    with open(os.path.join(out, "tuned.yaml"), "w") as f:
        f.write(header + yaml.safe_dump({"methods": tuned}, sort_keys=False))


def read_tuned(path: str) -> dict:
    """The ``methods:`` table of a tuned.yaml (label -> overrides)."""
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise ConfigError(f"bench compare --tuned: {path!r} not found (write one with `lasro bench tune`)") from None
    table = data.get("methods") if isinstance(data, dict) else None
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"bench compare --tuned: {path!r} holds no 'methods:' mapping of label -> overrides")
    return table
