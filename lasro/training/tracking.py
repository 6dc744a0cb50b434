"""Run outputs people look at: metrics.jsonl, TensorBoard scalars and images, labelled sample grids and
pictures, and a reward-curve PNG. Only the main process writes."""
from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image

from lasro.images import image_grid, labelled_grid


class RunTracker:
    def __init__(self, output_dir: str, tensorboard: bool = True, wandb_config: dict | None = None,
                 enabled: bool = True):
        self.output_dir, self.enabled = output_dir, enabled
        self.metrics_path = os.path.join(output_dir, "metrics.jsonl")
        self.tb = None
        self.wandb = None
        if not enabled:
            return
        os.makedirs(os.path.join(output_dir, "samples"), exist_ok=True)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(os.path.join(output_dir, "tensorboard"))
        if wandb_config is not None:
            import wandb  # optional extra: pip install lasro[wandb]

            self.wandb = wandb.init(project="lasro", dir=output_dir, config=wandb_config)

    def history(self) -> list[dict]:
        if not os.path.exists(self.metrics_path):
            return []
        with open(self.metrics_path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def truncate_after(self, round_index: int) -> None:
        """On resume, drop rows the interrupted run wrote after its last checkpoint."""
        if not self.enabled:
            return
        rows = [r for r in self.history() if r["round"] <= round_index]
        with open(self.metrics_path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)

    def log_round(self, row: dict) -> None:
        if not self.enabled:
            return
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        step = row["round"]
        for k, v in row.items():
            if isinstance(v, (int, float)) and k != "round" and np.isfinite(v):
                if self.tb is not None:
                    self.tb.add_scalar(k, v, step)
        if self.tb is not None:
            self.tb.flush()
        if self.wandb is not None:
            self.wandb.log(row, step=step)
        self.plot_reward_curve()

    def log_grid(self, name: str, images: list[Image.Image], rows: int, round_index: int,
                 row_labels: list[str] | None = None, captions: list[str] | None = None) -> str | None:
        """``samples/{name}_round-N.png`` (and TensorBoard): ``images`` in ``rows`` rows, labelled with
        ``row_labels`` (left of each row) and ``captions`` (under each image) when given."""
        if not self.enabled:
            return None
        grid = (labelled_grid(images, rows, row_labels, captions) if row_labels or captions
                else image_grid(images, rows))
        return self.save_picture(f"{name}_round-{round_index:04d}", grid, tb_name=name, step=round_index)

    def save_picture(self, name: str, picture: Image.Image, tb_name: str | None = None, step: int = 0) -> str | None:
        """``samples/{name}.png``, and a TensorBoard image (``tb_name``, default ``name``)."""
        if not self.enabled:
            return None
        path = os.path.join(self.output_dir, "samples", f"{name}.png")
        picture.save(path)
        if self.tb is not None:
            self.tb.add_image(tb_name or name, np.asarray(picture.convert("RGB")).transpose(2, 0, 1), step)
        return path

    def final_eval(self) -> dict | None:
        """``final_eval.json``, or None (none yet, or unreadable)."""
        try:
            with open(os.path.join(self.output_dir, "final_eval.json")) as f:
                data = json.load(f)
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def plot_reward_curve(self) -> None:
        """``reward_curve.png``: the held-out monitor against true-reward queries, with its 95% interval band
        when logged, and the paired final evaluation's initial and tuned means (95% intervals, on
        ``prompts.final_eval``) at the last round once ``final_eval.json`` exists."""
        if not self.enabled:
            return
        from matplotlib.figure import Figure

        rows = [r for r in self.history() if "eval/reward_2step_mean" in r or "eval/reward_1step_mean" in r]
        if not rows:
            return
        final = self.final_eval()
        if final and final.get("round") != rows[-1]["round"]:
            final = None  # an earlier run's file in this folder, not this run's last round
        span = max(1.0, rows[-1]["reward_queries"] - rows[0]["reward_queries"])
        fig = Figure(figsize=(8.2, 4.2))
        ax = fig.add_subplot()
        for k, color in ((1, "tab:blue"), (2, "tab:orange")):
            key = f"eval/reward_{k}step_mean"
            pts = [r for r in rows if key in r]
            if not pts:
                continue
            x = [r["reward_queries"] for r in pts]
            ax.plot(x, [r[key] for r in pts], marker="o", color=color, label=f"{k} step{'s' * (k > 1)} (monitor)")
            band = [r for r in pts if f"eval/reward_{k}step_ci95_low" in r]
            if band:
                ax.fill_between([r["reward_queries"] for r in band], [r[f"eval/reward_{k}step_ci95_low"] for r in band],
                                [r[f"eval/reward_{k}step_ci95_high"] for r in band], color=color, alpha=0.18, lw=0)
            if final and f"reward_{k}step_mean" in final.get("tuned", {}):
                xq = final.get("reward_queries", x[-1])
                ci = final.get("ci95", {})
                for which, marker, dx in (("initial", "s", -0.012), ("tuned", "*", 0.012)):
                    y = final[which][f"reward_{k}step_mean"]
                    lo_hi = ci.get(which, {}).get(f"reward_{k}step")
                    err = [[y - lo_hi[0]], [lo_hi[1] - y]] if lo_hi else None
                    ax.errorbar([xq + dx * span], [y], yerr=err, fmt=marker, color=color, ms=9 if marker == "*" else 6,
                                mfc="white" if which == "initial" else color, capsize=4,
                                label=f"final eval {which}, {k} step{'s' * (k > 1)}")
        ax.set_xlabel("true-reward queries")
        ax.set_ylabel("mean reward")
        title = "held-out monitor (band: 95% interval over prompts)"
        if final:
            title += f"\nmarkers: paired final evaluation, {final.get('samples', '?')} samples"
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)  # off the markers
        fig.tight_layout()
        fig.savefig(os.path.join(self.output_dir, "reward_curve.png"), dpi=100)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()
