"""A simulated person for the label app: it votes through the same HTTP API as the page, by a rule that it
alone knows (a registered reward, e.g. ``saturation``: "I like vivid pictures"). The trainer sees only its
votes, so what the generator learns is measured against the rule by a judge the trainer never trains on."""
from __future__ import annotations

import io
import json
import threading
import urllib.request

from PIL import Image

from lasro.rewards import build_reward


class SimulatedLabeller:
    """Polls ``URL/api/next`` and votes ``left``/``right`` for the image the rule scores higher (``tie``
    within ``tie_margin``), until ``stop()``; ``votes`` counts what it cast."""

    def __init__(self, url: str, rule="saturation", tie_margin: float = 0.0, poll: float = 0.2):
        self.url = url.rstrip("/") + "/"
        self.rule = build_reward(rule)
        self.tie_margin, self.poll = tie_margin, poll
        self.votes = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="simulated-labeller", daemon=True)

    def _get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            return r.read()

    def _post(self, path: str, body: dict) -> dict:
        origin = self.url.rstrip("/")
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "Origin": origin})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def choose(self, prompt: str, left: Image.Image, right: Image.Image) -> str:
        s0, s1 = self.rule([left, right], [prompt, prompt]).scores
        if abs(s0 - s1) <= self.tie_margin:
            return "tie"
        return "left" if s0 > s1 else "right"

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                pair = json.loads(self._get("api/next"))["pair"]
                if pair is None:
                    self._stop.wait(self.poll)
                    continue
                images = [Image.open(io.BytesIO(self._get(pair[key]))).convert("RGB") for key in ("image_0", "image_1")]
                self._post("api/vote", {"pair_id": pair["pair_id"], "choice": self.choose(pair["prompt"], *images)})
                self.votes += 1
            except OSError:  # the app not up yet, or gone: try again
                self._stop.wait(self.poll)

    def start(self) -> SimulatedLabeller:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=30)
