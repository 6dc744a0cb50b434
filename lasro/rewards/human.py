"""``reward: human``: people's pairwise choices as the only training signal.

Each call (one collection's batch) pairs the images of each prompt and step count in order (0 with 1, 2
with 3, ...), writes them into the label folder, queues the pairs in its vote store and waits until every
pair has a vote from the label app (``lasro label serve DIR``, or the one this reward starts itself). It
returns 1 for a pair's chosen image and 0 for the other; a tie or a skip gives both 0.5, which forms no
training pair. The info ``comparable_group`` gives each pair its own group, so the surrogate's
Bradley-Terry pairs are exactly the voted pairs: two images from different votes are never compared.

A batch is named by a hash of its prompts and pixels, so a run resumed after a crash, which regenerates the
same samples, finds the votes already cast for them instead of asking again.

People are asked only for training pairs: the held-out evaluations are scored by the run's first
``eval_rewards`` judge (the trainer says so at the start; without a judge it stops with an error).
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import time
from collections import defaultdict

import numpy as np
from PIL import Image

from lasro.labeling.votes import Pair, VoteStore
from lasro.rewards.base import Reward, RewardError
from lasro.rewards.registry import register_reward

log = logging.getLogger("lasro.rewards.human")
SCORES = {"left": (1.0, 0.0), "right": (0.0, 1.0), "tie": (0.5, 0.5), "skip": (0.5, 0.5)}


def pair_indices(prompts: list[str], metadata: list[dict]) -> list[tuple[int, int]]:
    """The two images of each prompt and step count; any other number is an error (a method that compares
    all samples of a prompt, as PPO's and GORS's normalisations do, would then compare different votes)."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, (p, m) in enumerate(zip(prompts, metadata)):
        groups[(p, m.get("steps"))].append(i)
    for (prompt, steps), idx in groups.items():
        if len(idx) != 2:
            raise RewardError(f"reward 'human' got {len(idx)} image(s) of prompt {prompt!r} at {steps} step(s) in one "
                              "batch; it needs exactly two, one pair to vote on: set exploration.samples_per_prompt: 2 "
                              "and no more prompts_per_round than there are training prompts (no prompt drawn twice)")
    return [(idx[0], idx[1]) for idx in groups.values()]


@register_reward("human", description="People's choices between two images of a prompt, from the lasro label "
                                      "app (pairwise; the run waits for the votes)")
class HumanReward(Reward):
    """Votes from people. ``dir``: the label folder (votes.sqlite, images/); ``serve``: start the label app
    on ``host``:``port`` inside the training process; ``timeout``: seconds to wait for a batch (None: no
    limit)."""

    evaluates = False  # a person cannot score thousands of evaluation images: judges do that

    def __init__(self, dir: str = "runs/human/labels", serve: bool = True, host: str = "127.0.0.1",
                 port: int = 8765, timeout: float | None = None, poll: float = 0.5):
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise RewardError("reward 'human' runs in one process only (its label app and vote store are local); "
                              "launch without accelerate's multi-process mode")
        self.dir, self.serve, self.host, self.port = dir, serve, host, port
        self.timeout, self.poll = timeout, poll
        self.store = VoteStore(dir)
        self.server = None
        self.should_stop = None  # set by the trainer: true once a stop (Ctrl-C, SIGTERM) is requested

    def url(self) -> str:
        return self.server.url if self.server is not None else f"http://{self.host}:{self.port}/"

    def start_app(self) -> None:
        if self.serve and self.server is None:
            from lasro.labeling.app import LabelServer

            self.server = LabelServer(self.dir, host=self.host, port=self.port).start()
            log.info("label app for %s on %s: open it and vote", self.dir, self.server.url)

    def progress_log(self, every: float = 30.0):
        """An ``on_progress`` that says once that the run waits, then at most every ``every`` seconds."""
        last = [None]

        def report(voted: int, total: int) -> None:
            now = time.monotonic()
            if voted < total and (last[0] is None or now - last[0] >= every):
                last[0] = now
                log.info("waiting for votes at %s: %d of %d pairs of this batch voted", self.url(), voted, total)
        return report

    def __call__(self, images: list[Image.Image], prompts: list[str], metadata: list[dict]):
        pairs = pair_indices(prompts, metadata)
        digest = hashlib.sha1()
        encoded = []
        for im, p in zip(images, prompts):
            buf = io.BytesIO()
            im.save(buf, format="PNG")
            encoded.append(buf.getvalue())
            digest.update(p.encode())
            digest.update(encoded[-1])
        batch = "b" + digest.hexdigest()[:16]
        if not self.store.pairs(batch):
            queued = []
            for j, (a, b) in enumerate(pairs):
                names = [f"{batch}-{j}-{k}.png" for k in range(2)]
                for name, i in zip(names, (a, b)):
                    with open(os.path.join(self.store.images, name), "wb") as f:
                        f.write(encoded[i])
                        f.flush()
                        os.fsync(f.fileno())  # on disk before its pair is queued
                queued.append(Pair(f"{batch}-{j}", batch, prompts[a], *names))
            self.store.add_pairs(queued)
        else:
            log.info("batch %s was queued before (a resumed run): its votes so far count", batch)
        self.start_app()
        try:
            choices = self.store.wait_for(batch, timeout=self.timeout, poll=self.poll, on_progress=self.progress_log(),
                                          should_stop=self.should_stop)
        except InterruptedError as e:
            raise RewardError(f"reward 'human': {e}. The votes so far are kept in {self.dir}; resume with --resume "
                              "latest: the batch is sampled again and, sampled identically, finds them") from None
        self.store.mark_consumed(batch)
        scores = np.full(len(images), 0.5)
        group = np.zeros(len(images), dtype=np.float64)
        seq = self.store.pair_numbers(batch)
        for j, (a, b) in enumerate(pairs):
            pair_id = f"{batch}-{j}"
            scores[a], scores[b] = SCORES[choices[pair_id]]
            group[a] = group[b] = 1 + seq[pair_id]
        return scores, {"comparable_group": group}
