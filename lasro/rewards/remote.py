"""Rewards over HTTP: a client (``remote``) and a server (``lasro serve-reward NAME``).

The wire format is JSON only (never pickle): the client POSTs
``{"prompts": [...], "metadata": [...], "images": [base64 PNG, ...]}`` to ``URL`` and expects
``{"scores": [...], "info": {name: [...]}}`` back. ``GET URL`` answers ``{"reward": NAME}``.
Standard library only, so a reward server needs nothing beyond lasro and the reward itself.
"""
from __future__ import annotations

import base64
import io
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image

from lasro.rewards.base import Reward, RewardError
from lasro.rewards.registry import register_reward

log = logging.getLogger("lasro.rewards.remote")
DESCRIPTION = "Any reward served over HTTP (JSON + base64 PNG; `lasro serve-reward NAME` serves one)"


def encode_image(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_image(data: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")


def _jsonable(value):
    """Metadata and info values as plain JSON (numpy scalars and arrays become numbers and lists)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


@register_reward("remote", description=DESCRIPTION)
class RemoteReward(Reward):
    """POST batches to ``url``; retry connection errors, timeouts and 5xx with exponential backoff."""

    name = "remote"
    description = DESCRIPTION

    def __init__(self, url: str, timeout: float = 60.0, retries: int = 3, backoff: float = 1.0,
                 batch_size: int = 64, headers: dict | None = None):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"remote reward url must start with http:// or https://, got {url!r}")
        self.url, self.timeout, self.retries, self.backoff = url, float(timeout), int(retries), float(backoff)
        self.batch_size, self.headers = int(batch_size), dict(headers or {})

    def _post(self, payload: dict) -> dict:
        body = json.dumps(payload).encode()
        last = None
        for attempt in range(1, self.retries + 1):
            request = urllib.request.Request(self.url, data=body, method="POST",
                                             headers={"Content-Type": "application/json", **self.headers})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as e:
                detail = e.read().decode(errors="replace")[:300]
                if e.code < 500:  # the request itself is wrong: retrying cannot help
                    raise RewardError(f"remote reward {self.url} rejected the batch: HTTP {e.code}: {detail}") from e
                last = f"HTTP {e.code}: {detail}"
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
                last = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
            if attempt < self.retries:
                wait = self.backoff * 2 ** (attempt - 1)
                log.warning("remote reward %s: try %d/%d failed (%s); retrying in %.1f s",
                            self.url, attempt, self.retries, last, wait)
                time.sleep(wait)
        raise RewardError(
            f"remote reward {self.url} failed after {self.retries} tries (last: {last}). Is the server running "
            "(`lasro serve-reward NAME --port PORT`) and reachable from here? Nothing was added to the replay "
            "buffer for this batch; checkpoints are intact, and --resume latest re-collects the round.")

    def __call__(self, images, prompts, metadata):
        scores: list[float] = []
        info: dict[str, list] = {}
        for i in range(0, len(images), self.batch_size):
            sl = slice(i, i + self.batch_size)
            reply = self._post({"prompts": list(prompts[sl]), "metadata": _jsonable(list(metadata[sl])),
                                "images": [encode_image(im) for im in images[sl]]})
            if not isinstance(reply, dict) or "scores" not in reply:
                raise RewardError(f"remote reward {self.url} answered without 'scores': {str(reply)[:200]}")
            scores += list(reply["scores"])
            for k, v in (reply.get("info") or {}).items():
                info.setdefault(k, []).extend(v)
        return np.asarray(scores, dtype=np.float64), {k: np.asarray(v) for k, v in info.items()}


class _Handler(BaseHTTPRequestHandler):
    reward = None  # a CheckedReward, set by make_server
    reward_name = ""

    def _reply(self, code: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - http.server naming
        self._reply(200, {"reward": self.reward_name})

    def do_POST(self):  # noqa: N802
        try:
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            images = [decode_image(s) for s in request["images"]]
            prompts = list(request["prompts"])
            metadata = request.get("metadata") or [{} for _ in images]
        except Exception as e:  # noqa: BLE001 - any malformed request is the client's error
            self._reply(400, {"error": f"bad request: {type(e).__name__}: {e}"})
            return
        try:
            out = self.reward(images, prompts, metadata)
        except Exception as e:  # noqa: BLE001 - reported to the client, server keeps serving
            self._reply(500, {"error": f"{type(e).__name__}: {e}"})
            return
        self._reply(200, {"scores": out.scores.tolist(), "info": _jsonable(out.info)})

    def log_message(self, fmt, *args):  # route access logs through logging, not stderr
        log.debug("%s " + fmt, self.address_string(), *args)


def make_server(spec, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """An HTTP server scoring with the reward ``spec`` (name, dotted path or dict), not yet started."""
    from lasro.rewards.registry import build_reward

    reward = build_reward(spec)
    handler = type("RewardHandler", (_Handler,), {"reward": reward, "reward_name": reward.name})
    return ThreadingHTTPServer((host, port), handler)


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread
