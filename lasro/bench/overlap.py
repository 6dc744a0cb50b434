"""``lasro bench overlap``: one collection round with the reward scored inline vs in a worker thread."""
from __future__ import annotations

import statistics
import tempfile

import torch

from lasro.bench.timing import quiet, timed
from lasro.training import Trainer


def bench_overlap(cfg, repeats: int = 3, warmup: int = 1) -> dict:
    """Median seconds of ``collect`` (sample, decode, score, buffer) with scoring inline and overlapped,
    alternating the two so drift in machine load hits both alike."""
    with tempfile.TemporaryDirectory() as tmp:
        tr = Trainer(quiet(cfg, tmp))  # its own copy of the exploration section, toggled below
        dev = tr.acc.device

        def collect(overlap: bool):
            tr.cfg.exploration.overlap_scoring = overlap
            return timed(lambda: tr.collector.collect(), dev)

        for _ in range(warmup):
            collect(False), collect(True)
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(repeats):
            for overlap in (False, True):
                times[overlap].append(collect(overlap))
        inline_s, overlap_s = statistics.median(times[False]), statistics.median(times[True])
        ex = cfg.exploration
        return {
            "model": cfg.model.pretrained, "reward": str(cfg.reward), "device": str(dev),
            "samples_per_round": ex.prompts_per_round * ex.samples_per_prompt * len(tr.steps_1_2),
            "chunk": tr.chunk, "repeats": repeats, "inline_s": round(inline_s, 4),
            "overlapped_s": round(overlap_s, 4), "speedup": round(inline_s / overlap_s, 3),
            "torch_threads": torch.get_num_threads(),
        }
