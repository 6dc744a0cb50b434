"""``lasro bench learnability``: can each method raise an easy black-box reward at all? Every method trains
toward each easy reward (``saturation``, ``jpeg_compressibility``) from the same config at a small query
budget; the paired final evaluation's gain and its 95% interval say whether it learnt. A method that cannot
raise an easy reward is broken, not a weak baseline, and a comparison with it would measure the defect."""
from __future__ import annotations

import os

from lasro.bench.compare import compare

EASY_REWARDS = ("saturation", "jpeg_compressibility")


def final_gains(final_eval: dict | None) -> dict:
    """``gain_{k}step`` and ``ci95_{k}step`` of a run's paired final evaluation, for the step counts it has."""
    out = {}
    for k in (1, 2):
        gain = (final_eval or {}).get("gain", {}).get(f"reward_{k}step")
        if gain:
            out[f"gain_{k}step"], out[f"ci95_{k}step"] = gain["mean"], gain["ci95"]
    return out


def gain_cell(row: dict, k: int) -> str:
    """A row's k-step gain and its 95% interval as a table cell ("–" without one)."""
    if f"gain_{k}step" not in row:
        return "–"
    low, high = row[f"ci95_{k}step"]
    return f"{row[f'gain_{k}step']:+.4f} [{low:+.4f}, {high:+.4f}]"


def learnability(config: str | None, rewards=EASY_REWARDS, methods: list[str] | None = None, queries: int = 1024,
                 seeds=(0,), out: str = "runs/learnability", overrides: list[str] | None = None) -> list[dict]:
    """One row per (reward, method): the 2-step and 1-step paired gains with their intervals, queries, wall."""
    rows = []
    for reward in rewards:
        results = compare(config, methods, list(seeds), queries, os.path.join(out, reward),
                          overrides=[*(overrides or []), f"reward={reward}"])
        for label, entry in results["methods"].items():
            if entry["skipped"]:
                rows.append({"reward": reward, "method": label, "skipped": entry["skipped"]})
                continue
            for run in entry["runs"]:
                final = run["final_eval"] or {}
                row = {"reward": reward, "method": label, "seed": run["seed"],
                       "queries": run["curve"][-1]["queries"], "wall_seconds": round(run["curve"][-1]["wall_seconds"]),
                       **final_gains(final)}
                row["learns"] = bool(row.get("ci95_2step") and row["ci95_2step"][0] > 0)
                rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| reward | method | seed | 2-step gain [95%] | 1-step gain [95%] | queries | wall s | learns |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("skipped"):
            lines.append(f"| {r['reward']} | {r['method']} | skipped: {r['skipped'][:80]} | | | | | |")
            continue
        lines.append(f"| {r['reward']} | {r['method']} | {r['seed']} | {gain_cell(r, 2)} | {gain_cell(r, 1)} | {r['queries']} | "
                     f"{r['wall_seconds']} | {'yes' if r['learns'] else 'NO'} |")
    return "\n".join(lines) + "\n"
