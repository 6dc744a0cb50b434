"""``lasro bench human``: does LaSRO move toward a person's taste from their votes alone? A simulated
labeller (``simulated_labeller.py``) votes in the label app by a rule only it knows; the run trains on
``reward: human`` (the votes) and the paired final evaluation scores the rule as a judge the trainer never
saw. Reports votes used, the rule's paired gain with its 95% interval, and wall time, per seed."""
from __future__ import annotations

import json
import os
import socket
import time

from lasro.bench.compare import Variant, run_config, run_one
from lasro.bench.learnability import final_gains, gain_cell
from lasro.bench.simulated_labeller import SimulatedLabeller
from lasro.config import read_config_data
from lasro.labeling.votes import VoteStore


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_human(config: str | None, rule: str = "saturation", votes: int = 512, seeds=(0,),
                out: str = "runs/bench-human", overrides: list[str] | None = None) -> list[dict]:
    """One row per seed. ``votes`` is the budget: 2 images per vote, so 2 x votes true-reward queries."""
    base = read_config_data(config, overrides)
    judges = [j for j in base.get("eval_rewards") or [] if j != rule]
    results = os.path.join(out, "human.json")
    done = {}
    if os.path.exists(results):  # a killed benchmark resumes: seeds finished with the same rule and budget stay
        with open(results) as f:
            done = {r["seed"]: r for r in json.load(f) if r["rule"] == rule and r["budget_votes"] == votes}
    rows = []
    for seed in seeds:
        if seed in done:
            rows.append(done[seed])
            continue
        run_dir = os.path.join(out, f"seed-{seed}")  # a seed killed mid-run reruns, its votes so far reused
        port = free_port()
        variant = Variant("lasro", "lasro", {
            "algorithm": {"method": "lasro"},
            "reward": {"name": "human", "kwargs": {"dir": os.path.join(run_dir, "labels"), "port": port,
                                                   "timeout": 600}},
            "eval_rewards": [rule, *judges],  # the first judge scores the evaluations: the rule
            "exploration": {"samples_per_prompt": 2}})
        cfg = run_config(base, variant, seed, 2 * votes, max(2, 2 * votes // 4), run_dir)
        labeller = SimulatedLabeller(f"http://127.0.0.1:{port}/", rule=rule).start()
        start = time.monotonic()
        try:
            result = run_one(cfg)
        finally:
            labeller.stop()
        with VoteStore(os.path.join(run_dir, "labels")) as store:
            used = store.progress()[0]
        row = {"seed": seed, "rule": rule, "budget_votes": votes, "votes": used, "queries": result["curve"][-1]["queries"],
               "wall_seconds": round(time.monotonic() - start), **final_gains(result["final_eval"])}
        row["moves"] = bool(row.get("ci95_2step") and row["ci95_2step"][0] > 0)
        rows.append(row)
        os.makedirs(out, exist_ok=True)
        with open(results + ".tmp", "w") as f:
            json.dump(rows, f, indent=1)
        os.replace(results + ".tmp", results)
    with open(os.path.join(out, "human.md"), "w") as f:
        f.write(markdown(rows))
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| seed | simulated preference | votes | 2-step gain [95%] | 1-step gain [95%] | wall s | moves |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['rule']} | {r['votes']} | {gain_cell(r, 2)} | {gain_cell(r, 1)} | "
                     f"{r['wall_seconds']} | {'yes' if r['moves'] else 'no'} |")
    return "\n".join(lines) + "\n"
