"""``lasro bench compare``: methods x seeds at an equal budget of true-reward queries.

Every run starts from the same base config; a *variant* is a label plus config overrides (a registered
method such as ``ppo``, or an ablation such as ``frozen_surrogate`` from a ``methods:`` mapping in the
config or a preset). Each run stops at the round that reaches the query budget and is evaluated on the
held-out prompts every ``eval_every_queries`` queries. When the config names ``prompts.final_eval``, each run
ends with the trainer's paired final evaluation (the tuned model against its initial one on the same noises,
many more samples than the curve's points), so that gains smaller than the curves' swing can still be ranked.
Writes ``results.json`` (every run's curve and final evaluation), ``results.md`` (final reward mean ± std over
seeds, paired gains, queries to reach the best baseline's final 2-step reward) and ``curves_queries.png`` /
``curves_wall.png``.
"""
from __future__ import annotations

import copy
import gc
import json
import logging
import os
from dataclasses import dataclass

import numpy as np
import yaml

from lasro.config import DEFAULT_CONFIG, ConfigError, apply_override, read_config_data
from lasro.methods import MethodNotApplicable, build_config, list_methods, method_class
from lasro.training import Trainer

log = logging.getLogger("lasro")
PRESETS = {name: os.path.join(os.path.dirname(DEFAULT_CONFIG), f"bench_{name}.yaml")
           for name in ("ablations", "ablations_config", "tuned", "tuned_unguarded")}
UNLIMITED_ROUNDS = 10**9  # the query budget, not the round count, ends a compare run


@dataclass
class Variant:
    label: str
    method: str
    overrides: dict


def _merge(base: dict, extra: dict) -> dict:
    """Deep merge: mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def variants(table: dict, labels: list[str] | None) -> list[Variant]:
    """Variants for ``labels`` (default: every label of ``table``, else every registered method, LaSRO
    first: the reference the others are compared with). A label is a
    key of ``table`` (label -> overrides) or a registered method name; its method is the overrides'
    ``algorithm.method``, else the label if it names a method, else lasro."""
    chosen = list(labels or (list(table) or ["lasro"] + [m for m in list_methods() if m != "lasro"]))
    out = []
    for label in chosen:
        if label not in table and label not in list_methods():
            raise ConfigError(f"bench compare: unknown method or variant '{label}'; methods: "
                              f"{', '.join(list_methods())}; variants: {', '.join(table) or '(none)'}")
        overrides = table.get(label) or {}
        if not isinstance(overrides, dict):
            raise ConfigError(f"bench compare: methods.{label} must be a mapping of config overrides")
        method = (overrides.get("algorithm") or {}).get("method") or (label if label in list_methods() else "lasro")
        out.append(Variant(label, method, _merge(overrides, {"algorithm": {"method": method}})))
    return out


def _leaves(data: dict, prefix: str = "") -> dict:
    """``{"a.b": value}`` for every non-mapping value of a nested mapping."""
    out = {}
    for k, v in data.items():
        out.update(_leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _same(a, b) -> bool:
    """Equal, counting YAML's "1e-4" (a string to PyYAML) as the number it means."""
    try:
        return a == b or float(a) == float(b)
    except (TypeError, ValueError):
        return False


def check_no_clash(chosen: list[Variant], overrides: list[str] | None) -> None:
    """A ``--set`` must not name a key a variant sets to another value: the variant's value would win and
    the --set be silently lost (a preset's lr over ``--set optim.lr``)."""
    given: dict = {}
    for o in overrides or []:
        apply_override(given, o)
    given = _leaves(given)
    clashes = [f"--set {key}={given[key]} (variant '{v.label}' sets {mine})" for v in chosen
               for key, mine in _leaves(v.overrides).items() if key in given and not _same(given[key], mine)]
    if clashes:
        raise ConfigError("bench compare: a variant's own setting would override these --set values: "
                          + "; ".join(clashes) + ". Drop the --set, or give the variants your values in a "
                          "`methods:` table (in CONFIG, or a file for --tuned)")


def finished_runs(out: str, base: dict, queries: int) -> dict:
    """(label, seed) -> (overrides, run) of the runs in ``out``/results.json made from the same base config
    and budget, and (label, None) -> (overrides, reason) of the variants it reports as skipped (their method
    refused the config: it would again); {} when there is none."""
    path = os.path.join(out, "results.json")
    try:
        with open(path) as f:
            old = json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    if old.get("base") != json.loads(json.dumps(base)) or old.get("queries") != queries:
        return {}
    methods = old.get("methods", {})
    return {**{(label, None): (m["overrides"], m["skipped"]) for label, m in methods.items() if m.get("skipped")},
            **{(label, run["seed"]): (m["overrides"], run) for label, m in methods.items() for run in m.get("runs", [])}}


def run_config(base: dict, variant: Variant, seed: int, queries: int, eval_every: int, out_dir: str,
               final_eval: bool = True):
    """The TrainConfig of one (variant, seed) run; ``final_eval=False`` drops ``prompts.final_eval``."""
    forced = {"seed": seed, **({} if final_eval else {"prompts": {"final_eval": None}}),
              "algorithm": {"max_reward_queries": queries, "rounds": UNLIMITED_ROUNDS},
              "logging": {"output_dir": out_dir, "eval_every_queries": eval_every, "progress": False,
                          "tensorboard": False, "wandb": False, "checkpoint_every": UNLIMITED_ROUNDS}}
    return build_config(_merge(_merge(base, variant.overrides), forced))


def curve(rows: list[dict]) -> list[dict]:
    """Evaluated rounds as (queries, wall_seconds, reward_1step, reward_2step)."""
    return [{"round": r["round"], "queries": r["reward_queries"], "wall_seconds": r["time/wall_seconds"],
             "reward_1step": r.get("eval/reward_1step_mean"), "reward_2step": r.get("eval/reward_2step_mean")}
            for r in rows if "eval/reward_1step_mean" in r]


def run_one(cfg) -> dict:
    """Train one run: its curve, and its paired final evaluation (None when the config has none)."""
    trainer = Trainer(cfg)
    try:
        points = curve(trainer.train())
    finally:
        del trainer
        gc.collect()
    path = os.path.join(cfg.logging.output_dir, "final_eval.json")
    final = None
    if cfg.prompts.final_eval is not None:
        with open(path) as f:
            final = json.load(f)
    return {"curve": points, "final_eval": final}


@dataclass
class PendingRun:
    """A (variant, seed) run still to train, and the comparison it belongs to (``results`` under ``out``)."""
    variant: Variant
    seed: int
    cfg: object
    results: dict
    out: str

    @property
    def entry(self) -> dict:
        return self.results["methods"][self.variant.label]


def _worker_start(threads: int) -> None:
    """A worker process of ``train_runs``: its share of the CPU threads, and the CLI's log format."""
    import torch

    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def train_runs(pending: list[PendingRun], jobs: int = 1):
    """Yield (run, outcome) for each pending run as it finishes; the outcome is ``run_one``'s result or the
    run's MethodNotApplicable. ``jobs`` > 1: that many runs at once, each in a fresh (spawned) process
    with cores / jobs CPU threads, all on the config's device (one GPU holds many demo-sized runs; a run's
    results do not depend on which others run beside it)."""
    if jobs <= 1 or len(pending) <= 1:
        for run in pending:
            if run.entry["skipped"] is not None:
                continue
            log.info("bench compare: %s (method %s), seed %d, budget %d queries", run.variant.label,
                     run.variant.method, run.seed, run.cfg.algorithm.max_reward_queries)
            try:
                yield run, run_one(run.cfg)
            except MethodNotApplicable as e:
                yield run, e
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    jobs = min(jobs, len(pending))
    threads = max(1, (os.cpu_count() or 1) // jobs)
    log.info("bench compare: %d runs, %d at a time (%d CPU threads each)", len(pending), jobs, threads)
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_start,
                             initargs=(threads,)) as pool:
        futures = {pool.submit(run_one, run.cfg): run for run in pending}
        failed = None  # the first run that failed: raised once the others have finished and been recorded
        for future in as_completed(futures):
            run = futures[future]
            try:
                outcome = future.result()
            except MethodNotApplicable as e:
                outcome = e
            except Exception as e:  # noqa: BLE001 - re-raised below
                log.error("bench compare: %s, seed %d failed: %s: %s", run.variant.label, run.seed,
                          type(e).__name__, e)
                failed = failed or e
                continue
            log.info("bench compare: %s, seed %d: finished", run.variant.label, run.seed)
            yield run, outcome
    if failed is not None:
        raise failed


def record(run: PendingRun, outcome) -> None:
    """Put a finished run (or its method's refusal) into its comparison's results.json, runs in seed order."""
    entry, seeds = run.entry, run.results["seeds"]
    if isinstance(outcome, MethodNotApplicable):
        if entry["skipped"] is None:
            log.warning("bench compare: %s skipped: %s", run.variant.label, outcome)
        entry["skipped"], entry["runs"] = str(outcome), []
    elif entry["skipped"] is None:
        entry["runs"].append({"seed": run.seed, "output_dir": run.cfg.logging.output_dir, **outcome})
        entry["runs"].sort(key=lambda r: seeds.index(r["seed"]) if r["seed"] in seeds else len(seeds))
    write_results(run.results, run.out)


def plan(config: str | None, labels: list[str] | None = None, seeds: list[int] = (0, 1, 2),
         queries: int | None = None, out: str = "runs/compare", preset: str | None = None,
         overrides: list[str] | None = None, eval_every_queries: int | None = None,
         final_eval: bool = True, table: dict | None = None) -> tuple[dict, list[PendingRun]]:
    """A comparison's results (holding the runs ``out``'s results.json already has with the same settings)
    and the runs still to train."""
    base = read_config_data(config, overrides)
    extra, table = table or {}, {}
    if preset:
        if preset not in PRESETS:
            raise ConfigError(f"bench compare: unknown preset '{preset}'; presets: {', '.join(PRESETS)}")
        with open(PRESETS[preset]) as f:
            table.update(yaml.safe_load(f)["methods"])
    table.update(base.pop("methods", None) or {})
    table.update(extra)
    queries = queries or (base.get("algorithm") or {}).get("max_reward_queries") or 0
    if queries < 1:
        raise ConfigError("bench compare needs a query budget: --queries N (or algorithm.max_reward_queries)")
    eval_every = eval_every_queries or (base.get("logging") or {}).get("eval_every_queries") or max(1, queries // 5)
    results = {"config": config, "preset": preset, "queries": queries, "eval_every_queries": eval_every,
               "seeds": list(seeds), "base": base, "methods": {}}
    os.makedirs(out, exist_ok=True)
    done = finished_runs(out, base, queries)
    chosen = variants(table, labels)
    check_no_clash(chosen, overrides)
    pending = []
    for v in chosen:
        entry = results["methods"][v.label] = {"method": v.method, "overrides": v.overrides, "runs": [],
                                               "skipped": None}
        same = json.loads(json.dumps(v.overrides))  # as results.json holds them
        refused = done.get((v.label, None))
        if refused is not None and refused[0] == same:
            entry["skipped"] = refused[1]
            continue
        for seed in seeds:
            previous = done.get((v.label, seed))
            if previous is not None and previous[0] == same:
                log.info("bench compare: %s, seed %d: finished earlier, kept", v.label, seed)
                entry["runs"].append(previous[1])
                continue
            cfg = run_config(base, v, seed, queries, eval_every, os.path.join(out, v.label, f"seed-{seed}"), final_eval)
            pending.append(PendingRun(v, seed, cfg, results, out))
    return results, pending


def finish(results: dict, out: str) -> None:
    """results.json / results.md / the curves, and the comparison's own report.html."""
    write_results(results, out)
    try:  # each run has written its own report
        from lasro.report import write_report

        write_report(out)
    except Exception as e:  # noqa: BLE001 - a report must never fail the comparison
        log.warning("report.html not written for %s: %s: %s", out, type(e).__name__, e)


def compare(config: str | None, labels: list[str] | None = None, seeds: list[int] = (0, 1, 2),
            queries: int | None = None, out: str = "runs/compare", preset: str | None = None,
            overrides: list[str] | None = None, eval_every_queries: int | None = None,
            final_eval: bool = True, table: dict | None = None, jobs: int = 1) -> dict:
    """Run every (variant, seed), write results.json / results.md / the two PNGs under ``out``; return the results.
    ``table`` adds variants (label -> overrides) to the config's ``methods:``. A run that ``out``'s
    results.json already holds, with the same settings, is not run again: a killed comparison resumes.
    ``jobs`` > 1 trains that many runs at once in worker processes (see ``train_runs``)."""
    results, pending = plan(config, labels, seeds, queries, out, preset, overrides, eval_every_queries, final_eval,
                            table)
    for run, outcome in train_runs(pending, jobs):
        record(run, outcome)
    finish(results, out)
    return results


# ------------------------------------------------------------------ reports
def _final(run: dict, key: str) -> float:
    return run["curve"][-1][key]


def _mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _with_spread(mean_std: tuple[float, float], runs: int, digits: str = ".4g", spread: str = ".2g") -> str:
    """"mean ± std" over seeds; the mean alone for one seed (a std of one value says nothing)."""
    mean, std = mean_std
    return f"{mean:{digits}}" + (f" ± {std:{spread}}" if runs > 1 else "")


def mean_curve(runs: list[dict], key: str, x_key: str = "queries") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, mean and std over seeds of ``key`` at each evaluation (seeds of one variant evaluate at the same
    query counts; curves are cut to the shortest)."""
    length = min(len(r["curve"]) for r in runs)
    x = np.mean([[p[x_key] for p in r["curve"][:length]] for r in runs], axis=0)
    y = np.array([[p[key] for p in r["curve"][:length]] for r in runs], dtype=float)
    return x, y.mean(0), y.std(0)


def queries_to_reach(runs: list[dict], target: float) -> float | None:
    """Queries at the first evaluation where the seed-mean 2-step reward reaches ``target`` (None: never)."""
    x, y, _ = mean_curve(runs, "reward_2step")
    hit = np.flatnonzero(y >= target - 1e-12)
    return float(x[hit[0]]) if len(hit) else None


def paired_gains(runs: list[dict]) -> dict:
    """Over the runs that have a final evaluation: each paired gain's mean and std over seeds, and how many
    seeds' 95% intervals lie above zero (``{}`` when no run has one)."""
    finals = [r["final_eval"] for r in runs if r.get("final_eval")]
    if not finals:
        return {}
    out = {"final_eval_runs": len(finals), "final_eval_samples": finals[0]["samples"]}
    for name in finals[0]["gain"]:
        gains = [f["gain"][name] for f in finals]
        out[f"gain_{name}"] = _mean_std([g["mean"] for g in gains])
        out[f"gain_{name}_seeds_above_zero"] = sum(g["ci95"][0] > 0 for g in gains)
        if len(gains) == 1:  # one seed: its own 95% interval is the only spread there is
            out[f"gain_{name}_ci95"] = list(gains[0]["ci95"])
        out[f"final_{name}"] = _mean_std([f["tuned"][f"{name}_mean"] for f in finals])
    return out


def is_black_box(method: str) -> bool:
    """Whether a method sees only reward values (a baseline) rather than the reward's gradient (DRaFT)."""
    try:
        return method_class(method).black_box
    except ConfigError:
        return True


def initial_reward(results: dict) -> float | None:
    """Mean 2-step reward of the untuned model: every run's evaluation at round 0, before any generator
    update (LaSRO's sits after its pre-training queries, not at 0 queries). None: no run has one."""
    first = [r["curve"][0] for m in results["methods"].values() for r in m["runs"] if r["curve"]]
    at_zero = [p["reward_2step"] for p in first if p["round"] == 0]
    return float(np.mean(at_zero)) if at_zero else None


def summary(results: dict) -> list[dict]:
    """One row per variant: final rewards (mean, std over seeds) and queries to reach the best baseline's
    final 2-step reward; the reference (the first variant, LaSRO by default) is not a baseline, nor is
    another variant of its method when other methods are compared (in an ablation table, where all are,
    they are the baselines), nor a method that reads the reward's gradient (DRaFT:
    ``Method.black_box`` False). When the
    best baseline ends at or below the untuned model, every run "reaches" it at 0 queries, so no
    queries-to-target is computed (``target_beats_initial`` False)."""
    done = {label: m for label, m in results["methods"].items() if m["runs"]}
    finals = {label: _mean_std([_final(r, "reward_2step") for r in m["runs"]])[0] for label, m in done.items()}
    labels = list(results["methods"])
    reference = results["methods"][labels[0]]["method"] if labels else None
    baselines = [label for label in labels[1:] if label in finals and is_black_box(results["methods"][label]["method"])]
    others = [label for label in baselines if results["methods"][label]["method"] != reference]
    baselines = others or baselines  # an ablation table compares variants of one method with each other
    best = max(baselines, key=finals.get) if baselines else None
    initial = initial_reward(results)
    beats_initial = best is not None and (initial is None or finals[best] > initial)
    target = finals[best] if beats_initial else None
    rows, best_queries = [], None
    for label, m in results["methods"].items():
        row = {"label": label, "method": m["method"], "runs": len(m["runs"]), "skipped": m["skipped"]}
        if m["runs"]:
            row["final_queries"] = _mean_std([_final(r, "queries") for r in m["runs"]])[0]
            for k in (1, 2):
                row[f"reward_{k}step"] = _mean_std([_final(r, f"reward_{k}step") for r in m["runs"]])
            if target is not None:
                row["queries_to_target"] = queries_to_reach(m["runs"], target)
                if label == best:
                    best_queries = row["queries_to_target"]
            row.update(paired_gains(m["runs"]))
        rows.append(row)
    for row in rows:
        q = row.get("queries_to_target")
        row["speedup_vs_best_baseline"] = best_queries / q if q and best_queries else None
    return [dict(r, best_baseline=best, best_baseline_2step=finals.get(best), initial_2step=initial,
                 target_beats_initial=beats_initial, target_2step=target) for r in rows]


def markdown(results: dict) -> str:
    rows = summary(results)
    first = rows[0] if rows else {}
    best, initial = first.get("best_baseline"), first.get("initial_2step")
    note = ""
    if best:
        note = f"Best baseline: **{best}** (final 2-step reward {first['best_baseline_2step']:.4g}"
        note += f"; untuned model {initial:.4g})" if initial is not None else ")"
        if not first["target_beats_initial"]:
            note += (". It ends at or below the untuned model, so queries to reach it are not computed: every "
                     "run reaches it before training")
        note += ".\n\n"
    references = [r["label"] for r in rows if r["runs"] and not is_black_box(r["method"])]
    if references:
        note += (f"{', '.join(references)} back-propagates the reward itself: an upper reference, not a black-box "
                 "baseline.\n\n")
    head = (f"# bench compare: {results['queries']} true-reward queries per run, seeds {results['seeds']}\n\n"
            + note
            + "| method | runs | final queries | 1-step reward | 2-step reward | queries to best baseline's "
              "final 2-step | best baseline's queries / these |\n|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        name = r["label"] if r["label"] == r["method"] else f"{r['label']} ({r['method']})"
        if r["skipped"]:
            lines.append(f"| {name} | skipped: {r['skipped']} | | | | | |")
            continue
        if not r["runs"]:
            continue
        rewards = [_with_spread(r[f"reward_{k}step"], r["runs"]) for k in (1, 2)]
        if "queries_to_target" not in r:
            reach = "–"
        elif r["queries_to_target"] is None:
            reach = "not reached"
        else:
            reach = f"{r['queries_to_target']:.0f}"
        ratio = f"{r['speedup_vs_best_baseline']:.2f}×" if r["speedup_vs_best_baseline"] else "–"
        lines.append(f"| {name} | {r['runs']} | {r['final_queries']:.0f} | {rewards[0]} | {rewards[1]} | {reach} | "
                     f"{ratio} |")
    notes = ("\nRewards: held-out prompts, fixed seeds, at the round that reached the budget (mean ± std over "
             "seeds). Queries to target: first evaluation (every "
             f"{results['eval_every_queries']} queries) where the seed-mean 2-step reward reaches the best "
             "baseline's final one; the last column > 1 means fewer queries than that baseline.\n")
    return head + "\n".join(lines) + "\n" + notes + paired_markdown(rows)


def paired_gain_cell(row: dict, metric: str, digits: int = 4) -> str:
    """A summary row's paired gain of ``metric``: with one seed the gain and its 95% interval, "+g [lo, hi]";
    with more, "mean ± std (k/n)", k the seeds whose interval lies above zero; "–" when the row has none."""
    gain = row.get(f"gain_{metric}")
    if gain is None:
        return "–"
    n, fmt = row["final_eval_runs"], f"+.{digits}f"
    if n == 1:
        low, high = row[f"gain_{metric}_ci95"]
        return f"{gain[0]:{fmt}} [{low:{fmt}}, {high:{fmt}}]"
    return f"{_with_spread(gain, n, fmt, '.3f')} ({row[f'gain_{metric}_seeds_above_zero']}/{n})"


def paired_markdown(rows: list[dict]) -> str:
    """The paired final evaluation's table (empty when no run has one)."""
    rows = [r for r in rows if r.get("final_eval_runs")]
    if not rows:
        return ""
    metrics = [k[len("gain_"):] for k in rows[0]
               if k.startswith("gain_") and not k.endswith(("_above_zero", "_ci95"))]
    head = ("\n## Paired final evaluation\n\nEach run's tuned model against its own initial model on the same "
            f"{rows[0]['final_eval_samples']} held-out samples (`prompts.final_eval`): the gain's mean ± std over "
            "seeds, and in brackets how many seeds' 95% intervals (resampling prompts) lie above zero; with one "
            "seed, the gain and its 95% interval.\n\n"
            "| method | " + " | ".join(f"{m} after" for m in metrics) + " | "
            + " | ".join(f"{m} gain" for m in metrics) + " |\n|---|" + "---|" * (2 * len(metrics)) + "\n")
    lines = []
    for r in rows:
        name = r["label"] if r["label"] == r["method"] else f"{r['label']} ({r['method']})"
        n = r["final_eval_runs"]
        after = [_with_spread(r["final_" + m], n) for m in metrics]
        gain = [paired_gain_cell(r, m) for m in metrics]
        lines.append(f"| {name} | " + " | ".join(after + gain) + " |")
    return head + "\n".join(lines) + "\n"


def plot_curves(results: dict, x_key: str, xlabel: str, path: str) -> None:
    """Held-out 1- and 2-step reward against ``x_key``: mean over seeds, band of ± one std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=False)
    for ax, k in zip(axes, (1, 2)):
        for label, m in results["methods"].items():
            if not m["runs"]:
                continue
            x, mean, std = mean_curve(m["runs"], f"reward_{k}step", x_key)
            ax.plot(x, mean, marker="o", label=label)
            ax.fill_between(x, mean - std, mean + std, alpha=0.2)
        ax.set_title(f"{k}-step samples")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("held-out mean reward")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_results(results: dict, out: str) -> None:
    path = os.path.join(out, "results.json")
    with open(path + ".tmp", "w") as f:  # atomic: a killed comparison resumes from the runs it holds
        json.dump({**results, "summary": summary(results)}, f, indent=1)
    os.replace(path + ".tmp", path)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(markdown(results))
    plot_curves(results, "queries", "true-reward queries", os.path.join(out, "curves_queries.png"))
    plot_curves(results, "wall_seconds", "wall seconds", os.path.join(out, "curves_wall.png"))
