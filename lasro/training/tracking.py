"""Run outputs people look at: metrics.jsonl, TensorBoard scalars and images, sample grids,
and a reward-curve PNG. Only the main process writes."""
from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image

from lasro.images import image_grid


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

    def log_grid(self, name: str, images: list[Image.Image], rows: int, round_index: int) -> str | None:
        if not self.enabled:
            return None
        grid = image_grid(images, rows)
        path = os.path.join(self.output_dir, "samples", f"{name}_round-{round_index:04d}.png")
        grid.save(path)
        if self.tb is not None:
            self.tb.add_image(name, np.asarray(grid).transpose(2, 0, 1), round_index)
        return path

    def plot_reward_curve(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = [r for r in self.history() if "eval/reward_2step_mean" in r or "eval/reward_1step_mean" in r]
        if not rows:
            return
        fig, ax = plt.subplots(figsize=(6, 4))
        for key, label in (("eval/reward_1step_mean", "1 step"), ("eval/reward_2step_mean", "2 steps")):
            pts = [(r["reward_queries"], r[key]) for r in rows if key in r]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=label)
        ax.set_xlabel("true-reward queries")
        ax.set_ylabel("held-out mean reward")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(self.output_dir, "reward_curve.png"), dpi=100)
        plt.close(fig)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()
