"""``RUN_DIR/report.html``: one self-contained page about a training run or a ``lasro bench compare`` folder.

Everything is inline: images and plots as ``data:`` URIs, CSS in a ``<style>`` element, no script, so the
page opens from a ``file://`` URL, offline or behind a proxy, and can be mailed as one file. It reads only
what the run wrote (``metrics.jsonl``, ``final_eval.json``, ``samples/*.png``, the newest checkpoint's
``state.json``; for a compare folder ``results.json`` and its curves); a missing piece is skipped with a
note, never an error.
"""
from __future__ import annotations

import base64
import datetime
import io
import json
import os
import platform
import re
from importlib import metadata

import yaml

from lasro.report import plots

TEMPLATE = "report.html.j2"
TEMPLATES = os.path.join(os.path.dirname(__file__), "templates")
ENVIRONMENT_FILE = "environment.json"  # what the training process recorded about itself
MAX_PNG_BYTES = 2_000_000  # larger pictures are embedded scaled down, as JPEG
MAX_WIDTH = 1600
MAX_PANELS = 15  # other training statistics shown, at most
MAX_FLAG_ROWS = 60  # flagged rounds listed, at most (all are marked on the plot)
PACKAGES = ("lasro", "torch", "diffusers", "transformers", "peft", "accelerate")
STEPS_RE = re.compile(r"^(.*)_(\d+)step$")
CHECKPOINT_RE = re.compile(r"^round-(\d{6})(?:-pre-(\d{6}))?$")  # as lasro.training.checkpointing names them


# ----------------------------------------------------------------- inputs
def read_metrics(run_dir: str) -> tuple[list[dict], list[str]]:
    """The rows of ``metrics.jsonl`` and notes (a missing file, unreadable lines: e.g. a killed run's last)."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return [], ["no metrics.jsonl in this folder"]
    rows, bad = [], 0
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                continue
            if isinstance(row, dict) and "round" in row:
                rows.append(row)
            else:
                bad += 1
    notes = [f"{bad} unreadable line(s) of metrics.jsonl skipped"] if bad else []
    if not rows:
        notes.append("metrics.jsonl holds no rows yet")
    return rows, notes


def read_json(path: str) -> tuple[dict | None, str | None]:
    if not os.path.exists(path):
        return None, None
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        return None, f"{os.path.basename(path)} could not be read: {e}"
    return (data, None) if isinstance(data, dict) else (None, f"{os.path.basename(path)} is not a JSON object")


def newest_state(run_dir: str) -> tuple[dict | None, str | None]:
    """The newest complete checkpoint's ``state.json`` and its folder name."""
    root = os.path.join(run_dir, "checkpoints")
    if not os.path.isdir(root):
        return None, None

    def order(name):
        m = CHECKPOINT_RE.match(name)
        return (int(m.group(1)), 0, int(m.group(2))) if m.group(2) else (int(m.group(1)), 1, 0)

    names = sorted((n for n in os.listdir(root) if CHECKPOINT_RE.match(n)
                    and os.path.isfile(os.path.join(root, n, "state.json"))), key=order)
    for name in reversed(names):
        state, _ = read_json(os.path.join(root, name, "state.json"))
        if state is not None:
            return state, name
    return None, None


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def environment(run_dir: str, given: dict | None, state: dict | None) -> tuple[dict, str]:
    """The run's environment: ``given`` (the training process) merged with the package versions, recorded to
    ``environment.json``; without it, the one recorded, else this process's versions (with a note)."""
    path = os.path.join(run_dir, ENVIRONMENT_FILE)
    if given is not None:
        env = {**versions(), **given}
        try:
            with open(path + ".tmp", "w") as f:
                json.dump(env, f, indent=1)
            os.replace(path + ".tmp", path)
        except OSError:
            pass
        return env, "recorded by the training process"
    recorded, _ = read_json(path)
    if recorded is not None:
        return recorded, f"recorded by the training process ({ENVIRONMENT_FILE})"
    env = versions()
    if state and "num_processes" in state:
        env["processes"] = state["num_processes"]
    return env, "not recorded by the run: the package versions are those of the process that wrote this report"


def embed(path: str) -> str | None:
    """A picture file as a ``data:`` URI; large ones scaled to ``MAX_WIDTH`` and JPEG-encoded."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    if len(data) <= MAX_PNG_BYTES and data[:4] == b"\x89PNG":
        return "data:image/png;base64," + base64.b64encode(data).decode()
    from PIL import Image

    try:
        im = Image.open(io.BytesIO(data)).convert("RGB")
    except OSError:
        return None
    if im.width > MAX_WIDTH:
        im = im.resize((MAX_WIDTH, max(1, round(im.height * MAX_WIDTH / im.width))), Image.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=88)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def png_uri(data: bytes | None) -> str | None:
    return None if data is None else "data:image/png;base64," + base64.b64encode(data).decode()


# --------------------------------------------------------------- formatting
def num(v, digits: int = 4) -> str:
    if not plots.finite(v):
        return "–" if v is None else str(v)
    return f"{v:.{digits}g}" if v != 0 else "0"


def signed(v) -> str:
    if not plots.finite(v):
        return "–"
    return f"{v:+.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:+.2e}"


def interval(lo_hi, fmt=num) -> str:
    return f"[{fmt(lo_hi[0])}, {fmt(lo_hi[1])}]" if lo_hi and len(lo_hi) == 2 else ""


def metric_label(name: str, reward: str | None) -> str:
    if name == "reward":
        return f"training reward{f' ({reward})' if reward else ''}"
    if "/" in name:
        label, metric = name.split("/", 1)
        return f"judge {label}" + ("" if metric == "reward" else f": {metric}")
    return name


def reward_name(spec) -> str | None:
    """A short name of a config's ``reward`` (a name, a mapping with ``name``, or a weighted list)."""
    if isinstance(spec, str):
        return spec
    if isinstance(spec, dict):
        return spec.get("name")
    if isinstance(spec, list):
        names = [reward_name(s) for s in spec]
        return " + ".join(n for n in names if n) or None
    return None


def judge_labels(rows: list[dict]) -> list[str]:
    """Labels of the held-out judges logged as ``eval/LABEL/reward_{k}step_mean``."""
    found = []
    for r in rows:
        for key in r:
            m = re.match(r"^eval/(.+)/reward_\d+step_mean$", key)
            if m and m.group(1) not in found:
                found.append(m.group(1))
    return found


def logged_steps(rows: list[dict]) -> list[int]:
    found = {int(m.group(1)) for r in rows for key in r for m in [re.match(r"^eval/reward_(\d+)step_mean$", key)] if m}
    found |= {int(m.group(1)) for r in rows for key in r for m in [re.match(r"^generator/surrogate_(\d+)step$", key)]
              if m}
    return sorted(found) or [1, 2]


# ------------------------------------------------------------ final table
def final_table(final: dict, reward: str | None) -> list[dict]:
    """One row per metric and step count of ``final_eval.json``: initial, tuned (with their intervals when
    recorded) and the paired gain with its 95% interval; the training reward first, then its other metrics,
    then each judge."""
    out = []
    ci = final.get("ci95") or {}
    for key, gain in (final.get("gain") or {}).items():
        m = STEPS_RE.match(key)
        if not m or not isinstance(gain, dict):
            continue
        name, k = m.group(1), int(m.group(2))
        lo_hi = gain.get("ci95") or [None, None]
        verdict = ("above zero" if plots.finite(lo_hi[0]) and lo_hi[0] > 0 else
                   "below zero" if plots.finite(lo_hi[1]) and lo_hi[1] < 0 else "includes zero")
        out.append({"metric": metric_label(name, reward), "name": name, "steps": k,
                    "initial": num((final.get("initial") or {}).get(f"{key}_mean")),
                    "initial_ci": interval((ci.get("initial") or {}).get(key)),
                    "tuned": num((final.get("tuned") or {}).get(f"{key}_mean")),
                    "tuned_ci": interval((ci.get("tuned") or {}).get(key)),
                    "gain": signed(gain.get("mean")), "gain_ci": interval(lo_hi, signed), "verdict": verdict,
                    # the training reward, its other metrics, then per judge its reward and its metrics
                    "order": (0 if name == "reward" else 1 if "/" not in name else 2,
                              name.split("/")[0] if "/" in name else "", not name.endswith("/reward"), name, k)})
    return sorted(out, key=lambda r: r["order"])


# --------------------------------------------------- reward-hacking monitor
def true_series(rows: list[dict]) -> list[tuple[str, list[tuple[str, str]]]]:
    """Groups of true-reward series for the monitor, keys with ``{k}`` for the step count."""
    groups = [("true reward", [("train/reward_{k}step_mean", "fresh samples (train)"),
                               ("eval/reward_{k}step_mean", "held-out monitor (eval)")])]
    groups += [(f"judge {label}", [(f"eval/{label}/reward_{{k}}step_mean", f"judge {label}")])
               for label in judge_labels(rows)]
    return groups


def hacking_flags(rows: list[dict], steps: list[int], groups=None) -> list[dict]:
    """Rounds where the surrogate's score of the generator's samples (``generator/surrogate_{k}step``) rose
    while a true series (fresh samples' true reward, the held-out monitor, a judge) fell.

    Each true series is compared between its consecutive logged rounds r0 < r1; the surrogate between its
    latest values at or before r0 and r1 (a round without generator steps keeps the last one). One row
    per (round, step count): ``{"round", "steps", "surrogate_change", "fell": [{"key", "label", "change"}]}``.
    """
    groups = groups if groups is not None else true_series(rows)
    flags: dict[tuple[int, int], dict] = {}
    ordered = sorted(rows, key=lambda r: r["round"])
    for k in steps:
        sur_key = f"generator/surrogate_{k}step"
        sur: dict[int, float] = {}
        last = None
        for r in ordered:
            if plots.finite(r.get(sur_key)):
                last = r[sur_key]
            if last is not None:
                sur[r["round"]] = last
        if not any(plots.finite(r.get(sur_key)) for r in ordered):
            continue
        for _, keys in groups:
            for template, label in keys:
                key = template.replace("{k}", str(k))
                pts = [(r["round"], r[key]) for r in ordered if plots.finite(r.get(key))]
                for (r0, y0), (r1, y1) in zip(pts, pts[1:]):
                    if r0 not in sur or r1 not in sur:
                        continue
                    ds = sur[r1] - sur[r0]
                    if ds > 0 and y1 < y0:
                        flag = flags.setdefault((r1, k), {"round": r1, "steps": k, "surrogate_change": ds, "fell": []})
                        flag["fell"].append({"key": key, "label": label, "change": y1 - y0})
    return [flags[key] for key in sorted(flags)]


# ------------------------------------------------------------- run report
def curves(rows: list[dict], steps: list[int]) -> tuple[list[dict], list[str]]:
    """The report's figures from metrics.jsonl, and notes on what had nothing to show."""
    figs, notes = [], []

    def add(title, data, caption=""):
        if data is not None:
            figs.append({"title": title, "uri": png_uri(data), "caption": caption})
        return data is not None

    banded = any(f"eval/reward_{k}step_ci95_low" in r for r in rows for k in steps)
    if not add("Held-out reward", plots.reward_curves(rows, steps),
               "Mean true reward of the held-out prompts on fixed noises, every evaluated round"
               + (", with its 95% interval (bootstrap over prompts)." if banded else " (no interval logged).")):
        notes.append("no held-out evaluation (eval/reward_*) in metrics.jsonl")
    for label in judge_labels(rows):
        add(f"Held-out judge: {label}", plots.reward_curves(rows, steps, prefix=f"eval/{label}/", title=f"judge {label}"),
            "A reward never trained on, scored on the same held-out samples.")
    training = ["surrogate/pair_accuracy", "surrogate/loss", "generator/loss", "generator/anchor"]
    if not add("Surrogate and generator", plots.panels(rows, [(k, [(k, "")]) for k in training], ncols=4,
                                                       hlines={"surrogate/pair_accuracy": 0.5}),
               "surrogate/pair_accuracy: share of fresh same-prompt pairs the surrogate orders like the true reward "
               "(dashed: chance). Losses per round."):
        notes.append("no surrogate or generator losses logged (a method without them)")
    shown = set(training) | {f"generator/surrogate_{k}step" for k in steps}
    others = sorted({key for r in rows for key, v in r.items() if plots.finite(v) and key not in shown
                     and key not in ("round", "reward_queries") and not key.startswith(("eval/", "time/"))
                     and not re.match(r"^train/reward(_\d+step)?_mean$", key)},
                    key=lambda key: (not key.startswith("generator/"), key))
    groups: dict[str, list[tuple[str, str]]] = {}  # a statistic's 1- and 2-step values in one plot
    for key in others:
        m = STEPS_RE.match(key)
        groups.setdefault(m.group(1) + "_Kstep" if m else key, []).append(
            (key, f"{m.group(2)} step{'s' * (m.group(2) != '1')}" if m else ""))
    if groups:
        titled = list(groups.items())
        more = len(titled) - MAX_PANELS
        add("Other training statistics", plots.panels(rows, titled[:MAX_PANELS], ncols=4),
            "generator/* (trust-region and step statistics) first, then the method's own: "
            + ", ".join(title for title, _ in titled[:MAX_PANELS]) + "."
            + (f" {more} more not shown: " + ", ".join(title for title, _ in titled[MAX_PANELS:]) + "." if more > 0
               else ""))
    return figs, notes


def pictures(run_dir: str, steps: list[int]) -> tuple[list[dict], list[str]]:
    samples = os.path.join(run_dir, "samples")
    found, notes = [], []
    names = os.listdir(samples) if os.path.isdir(samples) else []
    for k in steps:
        name = f"before_after_{k}step.png"
        if name in names:
            found.append({"title": f"Initial and tuned model, {k} step{'s' * (k > 1)}",
                          "caption": "Prompts of the final evaluation spanning the initial model's scores (lowest "
                                     "first), the same noises for both; true reward under each image, the tuned "
                                     "one with its change.", "uri": embed(os.path.join(samples, name)),
                          "first": None})
    if names and not found:
        notes.append("no before/after picture (written by the final evaluation: set prompts.final_eval)")
    for k in steps:
        rounds = sorted((int(m.group(1)), n) for n in names
                        for m in [re.match(rf"^eval_{k}step_round-(\d+)\.png$", n)] if m)
        if rounds:
            r, name = rounds[-1]
            item = {"title": f"Held-out samples, {k} step{'s' * (k > 1)}, round {r}",
                    "caption": "Held-out prompts (rows) x fixed seeds, true reward under each image.",
                    "uri": embed(os.path.join(samples, name)), "first": None}
            if len(rounds) > 1:
                item["first"] = {"title": f"round {rounds[0][0]}", "uri": embed(os.path.join(samples, rounds[0][1]))}
            found.append(item)
    if not names:
        notes.append("no samples/ folder")
    return [f for f in found if f["uri"]], notes


def run_context(run_dir: str, config: dict | None, config_source: str | None, env: dict | None) -> dict:
    rows, notes = read_metrics(run_dir)
    state, checkpoint = newest_state(run_dir)
    if config is None and state is not None:
        config, config_source = state.get("config"), f"the newest checkpoint ({checkpoint}/state.json)"
    final, final_note = read_json(os.path.join(run_dir, "final_eval.json"))
    notes += [final_note] if final_note else []
    steps = logged_steps(rows)
    cfg = config or {}
    reward = reward_name(cfg.get("reward"))
    last = rows[-1] if rows else {}
    overview = [("method", (cfg.get("algorithm") or {}).get("method") or (state or {}).get("method")),
                ("model", (cfg.get("model") or {}).get("pretrained")), ("reward", reward),
                ("held-out judges", ", ".join(judge_labels(rows)) or None),
                ("rounds logged", f"{len(rows)} (last: round {last['round']})" if rows else None),
                ("true-reward queries", last.get("reward_queries")),
                ("wall seconds", f"{last['time/wall_seconds']:.1f}" if plots.finite(last.get("time/wall_seconds")) else None)]
    headline = None
    if final:
        for k in sorted(steps, reverse=True):
            g = (final.get("gain") or {}).get(f"reward_{k}step")
            if g:
                headline = (f"Final paired evaluation, {k} step{'s' * (k > 1)}, {final.get('samples')} samples: "
                            f"{num(final['initial'].get(f'reward_{k}step_mean'))} → "
                            f"{num(final['tuned'].get(f'reward_{k}step_mean'))}, gain {signed(g['mean'])} "
                            f"{interval(g.get('ci95'), signed)}")
                break
    figs, curve_notes = curves(rows, steps) if rows else ([], [])
    groups = true_series(rows)
    flags = hacking_flags(rows, steps, groups)
    hacking_fig = png_uri(plots.hacking_monitor(rows, steps, groups, flags)) if rows else None
    pics, pic_notes = pictures(run_dir, steps)
    environment_, env_note = environment(run_dir, env, state)
    return {
        "kind": "run", "title": f"lasro run: {os.path.basename(os.path.abspath(run_dir))}",
        "run_dir": os.path.abspath(run_dir), "notes": notes, "overview": [(k, v) for k, v in overview if v is not None],
        "headline": headline,
        "final": {"rows": final_table(final, reward) if final else [], "samples": (final or {}).get("samples"),
                  "prompts": (final or {}).get("prompts"), "seed": (final or {}).get("seed"),
                  "round": (final or {}).get("round"),
                  "note": None if final else "no final_eval.json: this run had no prompts.final_eval "
                                             "(or has not finished)"},
        "curves": figs, "curve_notes": curve_notes,
        "hacking": {"figure": hacking_fig, "flags": [dict(f, surrogate_change=signed(f["surrogate_change"]),
                                                          fell=[dict(s, change=signed(s["change"])) for s in f["fell"]])
                                                     for f in flags[:MAX_FLAG_ROWS]],
                    "flagged_rounds": len({f["round"] for f in flags}), "more": max(0, len(flags) - MAX_FLAG_ROWS),
                    "note": None if hacking_fig else "no generator/surrogate_*step in metrics.jsonl: this method has "
                                                     "no surrogate (or the generator has not stepped yet)"},
        "pictures": pics, "picture_notes": pic_notes,
        "config": yaml.safe_dump(config, sort_keys=False, allow_unicode=True) if config else None,
        "config_source": config_source, "environment": sorted(environment_.items()), "environment_note": env_note,
    }


# --------------------------------------------------------- compare report
def _spread(pair, digits=".4g") -> str:
    if not isinstance(pair, (list, tuple)) or len(pair) != 2:
        return "–"
    mean, std = pair
    return f"{mean:{digits}}" + (f" ± {std:.2g}" if std else "")


def compare_context(run_dir: str, results: dict) -> dict:
    """The table of ``results.json``'s ``summary`` rows (what ``lasro bench compare`` computed for
    results.md), its paired final evaluation, its curves and links to each run's own report."""
    rows = results.get("summary") or []
    notes = [] if rows else ["results.json has no summary rows yet (no run finished)"]
    table = []
    for r in rows:
        name = r["label"] if r["label"] == r.get("method") else f"{r['label']} ({r.get('method')})"
        if r.get("skipped"):
            table.append({"name": name, "skipped": r["skipped"]})
            continue
        if not r.get("runs"):
            continue
        q = r.get("queries_to_target", "absent")
        reach = "–" if q == "absent" else "not reached" if q is None else f"{q:.0f}"
        ratio = r.get("speedup_vs_best_baseline")
        table.append({"name": name, "runs": r["runs"], "final_queries": num(r.get("final_queries"), 6),
                      "reward_1step": _spread(r.get("reward_1step")), "reward_2step": _spread(r.get("reward_2step")),
                      "reach": reach, "ratio": f"{ratio:.2f}×" if ratio else "–"})
    paired = [r for r in rows if r.get("final_eval_runs")]
    metrics = [k[len("gain_"):] for k in (paired[0] if paired else {})
               if k.startswith("gain_") and not k.endswith(("_above_zero", "_ci95"))]
    paired_rows = []
    for r in paired:
        n = r["final_eval_runs"]
        cells = []
        for m in metrics:
            after = _spread(r.get(f"final_{m}"))
            g = r.get(f"gain_{m}") or [float("nan"), 0]
            if n == 1 and r.get(f"gain_{m}_ci95"):
                gain = f"{signed(g[0])} {interval(r[f'gain_{m}_ci95'], signed)}"
            else:
                gain = f"{signed(g[0])} ± {g[1]:.3f} ({r.get(f'gain_{m}_seeds_above_zero')}/{n} above zero)"
            cells.append((after, gain))
        paired_rows.append({"name": r["label"], "cells": cells})
    first = rows[0] if rows else {}
    links = []
    for label, m in (results.get("methods") or {}).items():
        for run in m.get("runs") or []:
            rel = os.path.join(label, f"seed-{run.get('seed')}", "report.html")
            if os.path.exists(os.path.join(run_dir, rel)):
                links.append({"label": f"{label}, seed {run.get('seed')}", "href": rel.replace(os.sep, "/")})
    figs = []
    for name, title in (("curves_queries.png", "Held-out reward against true-reward queries"),
                        ("curves_wall.png", "Held-out reward against wall seconds")):
        uri = embed(os.path.join(run_dir, name))
        if uri:
            figs.append({"title": title, "uri": uri, "caption": "Mean over seeds, band ± one std."})
        else:
            notes.append(f"no {name}")
    setup = {k: results.get(k) for k in ("config", "preset", "queries", "eval_every_queries", "seeds")}
    setup["methods"] = {label: {"method": m.get("method"), "overrides": m.get("overrides")}
                        for label, m in (results.get("methods") or {}).items()}
    return {
        "kind": "compare", "title": f"lasro bench compare: {os.path.basename(os.path.abspath(run_dir))}", "headline": None,
        "run_dir": os.path.abspath(run_dir), "notes": notes,
        "overview": [("query budget per run", results.get("queries")), ("seeds", results.get("seeds")),
                     ("evaluated every", f"{results.get('eval_every_queries')} queries"),
                     ("best baseline", first.get("best_baseline")),
                     ("untuned model, 2 steps", num(first.get("initial_2step")) if first.get("initial_2step") is not None
                      else None)],
        "compare": {"table": table, "metrics": metrics, "paired": paired_rows,
                    "paired_samples": paired[0].get("final_eval_samples") if paired else None,
                    "target_note": None if not first.get("best_baseline") or first.get("target_beats_initial") else
                    "The best baseline ends at or below the untuned model, so queries to reach it are not computed.",
                    "links": links},
        "curves": figs, "curve_notes": [],
        "config": yaml.safe_dump(setup, sort_keys=False, allow_unicode=True), "config_source": "results.json",
        "environment": sorted(versions().items()),
        "environment_note": "the package versions of the process that wrote this report",
    }


# ------------------------------------------------------------------ entry
def render(context: dict) -> str:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    return env.get_template(TEMPLATE).render(**context)


def build_report(run_dir: str, config: dict | None = None, config_path: str | None = None,
                 environment: dict | None = None) -> str:
    """The report's HTML for ``run_dir`` (a training run, or a bench compare folder with ``results.json``).
    ``config``: the run's config as a dict; ``config_path``: a YAML file to show instead (default: the newest
    checkpoint's); ``environment``: what the training process knows of itself (device, processes)."""
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"run folder {run_dir!r} not found")
    source = None
    if config_path is not None:
        with open(config_path) as f:
            config = yaml.safe_load(f) or {}
        source = config_path
    elif config is not None:
        source = "the training process"
    results, note = read_json(os.path.join(run_dir, "results.json"))
    if results is not None and "methods" in results:
        context = compare_context(run_dir, results)
    else:
        context = run_context(run_dir, config, source, environment)
        if note:
            context["notes"].append(note)
    context["generated"] = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return render(context)


def write_report(run_dir: str, out: str | None = None, config: dict | None = None, config_path: str | None = None,
                 environment: dict | None = None) -> str:
    """Write ``build_report(...)`` to ``out`` (default ``RUN_DIR/report.html``) atomically; its path."""
    out = out or os.path.join(run_dir, "report.html")
    text = build_report(run_dir, config, config_path, environment)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(out + ".tmp", out)
    return out

