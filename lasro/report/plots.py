"""The report's figures, drawn with matplotlib's object API (no pyplot, no global backend): each function
returns PNG bytes, or None when the metrics hold nothing to draw."""
from __future__ import annotations

import io
import math

DPI = 90
COLORS = {1: "tab:blue", 2: "tab:orange"}


def finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def series(rows: list[dict], key: str, x_key: str = "round") -> tuple[list[float], list[float]]:
    """(x, y) of the rows where ``key`` and ``x_key`` are finite numbers."""
    pts = [(r[x_key], r[key]) for r in rows if finite(r.get(key)) and finite(r.get(x_key))]
    return [p[0] for p in pts], [p[1] for p in pts]


def _png(fig, left: float = 0.75, right: float = 0.2, top: float = 0.35, bottom: float = 0.5,
         hspace: float = 0.55, wspace: float = 0.3) -> bytes:
    """PNG bytes of ``fig``, with margins in inches (a fixed layout: tight_layout doubles the drawing time,
    and a report is drawn at the end of every run)."""
    w, h = fig.get_size_inches()
    fig.subplots_adjust(left=left / w, right=1 - right / w, top=1 - top / h, bottom=bottom / h, hspace=hspace,
                        wspace=wspace)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, pil_kwargs={"compress_level": 3})
    return buf.getvalue()


def _integer_x(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _steps_label(k: int) -> str:
    return f"{k} step{'s' * (k > 1)}"


def reward_curves(rows: list[dict], steps: list[int], prefix: str = "eval/", title: str = "held-out monitor"
                  ) -> bytes | None:
    """``{prefix}reward_{k}step_mean`` against true-reward queries and against wall seconds, with the
    ``_ci95_low/high`` band where logged."""
    from matplotlib.figure import Figure

    if not any(series(rows, f"{prefix}reward_{k}step_mean")[0] for k in steps):
        return None
    fig = Figure(figsize=(10, 3.6))
    for ax, (x_key, xlabel) in zip(fig.subplots(1, 2), (("reward_queries", "true-reward queries"),
                                                        ("time/wall_seconds", "wall seconds"))):
        for k in steps:
            x, y = series(rows, f"{prefix}reward_{k}step_mean", x_key)
            if not x:
                continue
            ax.plot(x, y, marker="o", ms=3, color=COLORS.get(k), label=_steps_label(k))
            band = [r for r in rows if finite(r.get(f"{prefix}reward_{k}step_ci95_low")) and finite(r.get(x_key))]
            if band:
                ax.fill_between([r[x_key] for r in band], [r[f"{prefix}reward_{k}step_ci95_low"] for r in band],
                                [r[f"{prefix}reward_{k}step_ci95_high"] for r in band], color=COLORS.get(k),
                                alpha=0.18, lw=0, label=f"95% interval, {_steps_label(k)}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("mean reward")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    return _png(fig, wspace=0.25)


def panels(rows: list[dict], groups: list[tuple[str, list[tuple[str, str]]]], x_key: str = "round", ncols: int = 3,
           hlines: dict[str, float] | None = None) -> bytes | None:
    """One small plot per group ``(title, [(key, label), ...])`` against ``x_key`` (e.g. a statistic's 1- and
    2-step values together), for the groups with a value; ``hlines``: a reference line per title."""
    from matplotlib.figure import Figure

    groups = [(title, [(k, lab) for k, lab in keys if series(rows, k, x_key)[0]]) for title, keys in groups]
    groups = [(title, keys) for title, keys in groups if keys]
    if not groups:
        return None
    ncols = min(ncols, len(groups))
    nrows = math.ceil(len(groups) / ncols)
    fig = Figure(figsize=(3.6 * ncols, 2.5 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (title, keys) in zip(axes, groups):
        for key, label in keys:
            x, y = series(rows, key, x_key)
            ax.plot(x, y, marker="o" if len(x) < 40 else None, ms=3, label=label or None)
        if len(keys) > 1:
            ax.legend(fontsize=7, loc="best")
        if hlines and title in hlines:
            ax.axhline(hlines[title], color="grey", ls="--", lw=1)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(x_key, fontsize=8)
        if x_key == "round":
            _integer_x(ax)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[len(groups):]:
        ax.set_visible(False)
    return _png(fig)


def hacking_monitor(rows: list[dict], steps: list[int], groups: list[tuple[str, list[tuple[str, str]]]],
                    flags: list[dict]) -> bytes | None:
    """Per step count (columns): the surrogate's score on the generator's samples (top row), then one row per
    group of true series (``(title, [(key with "{k}", label), ...])``: the training reward of fresh samples
    with the held-out monitor, then each judge) against the round. Flagged rounds are red lines, the
    series that fell there red circles."""
    from matplotlib.figure import Figure

    steps = [k for k in steps if series(rows, f"generator/surrogate_{k}step")[0]]
    if not steps:
        return None
    nrows = 1 + len(groups)
    fig = Figure(figsize=(5.2 * len(steps), 2.4 * nrows))
    axes = fig.subplots(nrows, len(steps), squeeze=False, sharex="col")
    for c, k in enumerate(steps):
        flagged = [f for f in flags if f["steps"] == k]
        x, y = series(rows, f"generator/surrogate_{k}step")
        axes[0][c].plot(x, y, marker="o", ms=3, color="tab:purple")
        axes[0][c].set_title(f"surrogate's score of the generator's samples, {_steps_label(k)}", fontsize=9)
        for r, (title, keys) in enumerate(groups, start=1):
            ax = axes[r][c]
            for template, label in keys:
                key = template.replace("{k}", str(k))
                x, y = series(rows, key)
                if not x:
                    continue
                ax.plot(x, y, marker="o", ms=3, label=label)
                fell = {f["round"] for f in flagged for s in f["fell"] if s["key"] == key}
                pts = [(xi, yi) for xi, yi in zip(x, y) if xi in fell]
                if pts:
                    ax.plot(*zip(*pts), "o", color="red", ms=8, mfc="none", mew=1.5)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7, loc="upper left")
            ax.set_title(f"{title}, {_steps_label(k)}", fontsize=9)
        for r in range(nrows):
            for f in flagged:
                axes[r][c].axvline(f["round"], color="red", alpha=0.35, lw=1.2)
            axes[r][c].grid(alpha=0.3)
            axes[r][c].tick_params(labelsize=7)
        _integer_x(axes[-1][c])
        axes[-1][c].set_xlabel("round", fontsize=8)
    return _png(fig, hspace=0.45, wspace=0.25)
