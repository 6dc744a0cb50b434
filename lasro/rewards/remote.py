"""Rewards over HTTP: a client (``remote``) and a server (``lasro serve-reward NAME``).

The wire format is JSON only (never pickle): the client POSTs
``{"prompts": [...], "metadata": [...], "images": [base64 PNG, ...]}`` to ``URL`` and expects
``{"scores": [...], "info": {name: [...]}}`` back; errors come back as ``{"error": "..."}``.
``GET URL`` (``/`` or ``/health``) answers ``{"reward": NAME}`` without a token.
Standard library only, so a reward server needs nothing beyond lasro and the reward itself.

Faults: the client retries what may pass on its own (connection errors, timeouts, 5xx, a reply that is not
JSON) and stops at once on what would only repeat (4xx: a config error; well-formed JSON with the wrong
scores: a server bug). The server bounds what one request may cost (body bytes, images), runs the reward
one call at a time unless the reward declares ``thread_safe = True``, and off loopback requires a token.
"""
from __future__ import annotations

import base64
import contextlib
import hmac
import http.client
import io
import ipaddress
import json
import logging
import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image

from lasro.rewards.base import CheckedReward, Reward, RewardError
from lasro.rewards.registry import register_reward

log = logging.getLogger("lasro.rewards.remote")
DESCRIPTION = "Any reward served over HTTP (JSON + base64 PNG; `lasro serve-reward NAME` serves one)"
TOKEN_ENV = "LASRO_REWARD_TOKEN"
MAX_REQUEST_BYTES = 64 * 2**20  # a batch of 256 1024x1024 PNGs of generated images fits comfortably
MAX_BATCH = 256
_DISCARD_LIMIT = 256 * 2**20  # a rejected body up to this size is read and dropped so its client sees the reply


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


def resolve_token(token: str | None) -> str | None:
    """``token`` if given (``""`` means none), else ``$LASRO_REWARD_TOKEN``: client and server read the same
    variable, so one export on a machine configures both ends."""
    token = os.environ.get(TOKEN_ENV) if token is None else token
    return token or None


# ---------------------------------------------------------------------------------------------- client

class _Transient(Exception):
    """A failed try that another try may fix; the text says what happened."""


_HINTS = {
    400: "the server could not read the request: are client and server the same lasro version?",
    401: f"set the server's token on the client: reward kwargs.token or ${TOKEN_ENV}",
    404: "check the path in the reward's url",
    411: "the request had no Content-Length: is a proxy rewriting it?",
    413: "lower the remote reward's kwargs.batch_size, or start the server with a larger --max-batch / "
         "--max-request-mb",
}


def _error_text(e: urllib.error.HTTPError) -> str:
    """The server's ``{"error": ...}`` message, else the start of its body (a proxy's page, say)."""
    try:
        raw = e.read().decode(errors="replace")
    except Exception:  # noqa: BLE001 - the connection may be gone: the status is all there is
        return ""
    finally:
        e.close()
    with contextlib.suppress(ValueError, TypeError, KeyError):
        return str(json.loads(raw)["error"])[:500]
    return raw[:300]


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


@register_reward("remote", description=DESCRIPTION)
class RemoteReward(Reward):
    """POST batches to ``url``.

    ``retries`` is the number of tries per batch (1: no retry); try k waits ``backoff * 2**(k-1)`` seconds
    after it fails. ``timeout`` bounds each socket wait (connect, and each wait for reply bytes), so a hung
    server costs at most ``retries * timeout`` plus the backoff. ``token`` (default ``$LASRO_REWARD_TOKEN``)
    is sent as ``Authorization: Bearer``; over plain http it travels in the clear, like the images.
    """

    thread_safe = True  # no state between calls: the server may call it from many threads

    def __init__(self, url: str, timeout: float = 60.0, retries: int = 3, backoff: float = 1.0,
                 batch_size: int = 64, headers: dict | None = None, token: str | None = None):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"remote reward url must start with http:// or https://, got {url!r}")
        if int(retries) < 1:
            raise ValueError(f"remote reward retries is the number of tries per batch (at least 1), got {retries}")
        self.url, self.timeout, self.retries, self.backoff = url, float(timeout), int(retries), float(backoff)
        self.batch_size = int(batch_size)
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        token = resolve_token(token)
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def _try(self, body: bytes):
        """One POST and its parsed reply. Raises _Transient for a fault worth another try, RewardError for a
        4xx: a bad request or a bad token is a config error that the same request will meet again."""
        request = urllib.request.Request(self.url, data=body, method="POST", headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as e:
            detail = _error_text(e)
            if e.code >= 500:
                raise _Transient(f"HTTP {e.code}: {detail}") from e
            raise RewardError(f"remote reward {self.url} rejected the batch: HTTP {e.code}: {detail} "
                              f"({_HINTS.get(e.code, 'fix the request or the server')}); not retried") from e
        except (urllib.error.URLError, http.client.HTTPException, OSError) as e:  # refused, dropped, timed out
            raise _Transient(f"{type(e).__name__}: {getattr(e, 'reason', e)}") from e
        try:
            return json.loads(raw)
        except ValueError as e:  # a truncated or garbled reply: the transport's fault, not the request's
            raise _Transient(f"reply is not JSON ({e}): {raw[:80]!r}") from e

    def _post(self, payload: dict):
        """The reply to ``payload``, trying up to ``retries`` times with exponential backoff."""
        body = json.dumps(payload).encode()
        last = ""
        for attempt in range(1, self.retries + 1):
            try:
                return self._try(body)
            except _Transient as e:
                last = str(e)
            if attempt < self.retries:
                wait = self.backoff * 2 ** (attempt - 1)
                log.warning("remote reward %s: try %d/%d failed (%s); retrying in %.2f s",
                            self.url, attempt, self.retries, last, wait)
                time.sleep(wait)
        tries = f"{self.retries} {'try' if self.retries == 1 else 'tries'}"
        raise RewardError(
            f"remote reward {self.url} failed after {tries} (last: {last}). Is the server running "
            "(`lasro serve-reward NAME --port PORT`), reachable from here and fast enough for timeout="
            f"{self.timeout:g} s? Nothing was added to the replay buffer for this batch; checkpoints are "
            "intact, and --resume latest re-collects the round.")

    def _checked(self, reply, n: int) -> tuple[list, dict]:
        """The reply's scores and info, one number (one value) per image. Not retried: a server that answers
        well-formed JSON with the wrong scores is misconfigured or buggy and would answer the same again."""
        scores = reply.get("scores") if isinstance(reply, dict) else None
        if not isinstance(scores, list) or len(scores) != n or not all(_is_number(s) for s in scores):
            got = f"{len(scores)} scores" if isinstance(scores, list) else f"no score list ({type(scores).__name__})"
            raise RewardError(f"remote reward {self.url} answered {got} for {n} images, expected a list of {n} "
                              f"numbers: {str(reply)[:200]}. Is it `lasro serve-reward` of the same version?")
        info = reply.get("info") or {}
        if not isinstance(info, dict) or any(not isinstance(v, list) or len(v) != n for v in info.values()):
            raise RewardError(f"remote reward {self.url} answered an info that is not one list of {n} values "
                              f"per key: {str(info)[:200]}")
        return scores, info

    def __call__(self, images, prompts, metadata):
        scores: list[float] = []
        info: dict[str, list] = {}
        for i in range(0, len(images), self.batch_size):
            sl = slice(i, i + self.batch_size)
            reply = self._post({"prompts": list(prompts[sl]), "metadata": _jsonable(list(metadata[sl])),
                                "images": [encode_image(im) for im in images[sl]]})
            got, got_info = self._checked(reply, len(images[sl]))
            scores += got
            for k, v in got_info.items():
                info.setdefault(k, []).extend(v)
        return np.asarray(scores, dtype=np.float64), {k: np.asarray(v) for k, v in info.items()}


# ---------------------------------------------------------------------------------------------- server

class _Reject(Exception):
    """A request refused before the reward runs: HTTP ``code`` and a message saying what to fix."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


class _Handler(BaseHTTPRequestHandler):
    """One request. Everything it may refuse is refused before the reward runs; a failure inside the reward
    is the reward's (500) and the server keeps serving."""

    reward = None  # a CheckedReward, set by make_server
    reward_name = ""
    token: str | None = None
    max_request_bytes = MAX_REQUEST_BYTES
    max_batch = MAX_BATCH
    reward_lock = contextlib.nullcontext()
    timeout = 120  # seconds a client may stall mid-request before its connection is dropped

    def _reply(self, code: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - http.server naming
        if self.path.split("?")[0] not in ("/", "/health"):
            self._reply(404, {"error": f"no {self.path}: GET / or /health, POST a batch"})
            return
        self._reply(200, {"reward": self.reward_name})

    def do_POST(self):  # noqa: N802
        try:
            images, prompts, metadata = self._parse(self._body())
        except _Reject as e:
            self._reply(e.code, {"error": str(e)})
            return
        try:
            with self.reward_lock:
                out = self.reward(images, prompts, metadata)
        except Exception as e:  # noqa: BLE001 - reported to the client, server keeps serving
            log.warning("reward %s failed on %d image(s): %s: %s", self.reward_name, len(images), type(e).__name__, e)
            self._reply(500, {"error": f"{type(e).__name__}: {e}"})
            return
        self._reply(200, {"scores": out.scores.tolist(), "info": _jsonable(out.info)})

    def _authorized(self) -> bool:
        sent = self.headers.get("Authorization", "")
        return hmac.compare_digest(sent.encode(), f"Bearer {self.token}".encode())

    def _body(self) -> bytes:
        """The request body, once its length and the token pass; a refused body is never buffered."""
        length = self.headers.get("Content-Length")
        if length is None:
            raise _Reject(411, "Content-Length is required")
        if not length.isdigit():
            raise _Reject(400, f"bad Content-Length {length!r}")
        length = int(length)
        if self.token and not self._authorized():
            self._discard(length)
            raise _Reject(401, "missing or wrong token: send 'Authorization: Bearer TOKEN' with the server's "
                               f"token (remote reward kwargs.token or ${TOKEN_ENV})")
        if length > self.max_request_bytes:
            self._discard(length)
            raise _Reject(413, f"request body of {length} bytes is over this server's limit of "
                               f"{self.max_request_bytes} bytes (--max-request-mb); lower the client's batch_size")
        return self.rfile.read(length)

    def _discard(self, length: int) -> None:
        """Read and drop up to _DISCARD_LIMIT bytes of a refused body. The client sends the whole body before it
        reads the reply; closing on unread bytes resets the connection, and it would see a reset, not why."""
        left = min(length, _DISCARD_LIMIT)
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 16))
            if not chunk:
                break
            left -= len(chunk)
        self.close_connection = True

    def _parse(self, body: bytes) -> tuple[list, list, list]:
        """Images, prompts and metadata from a JSON body; each way it can be wrong gets its own message."""
        try:
            request = json.loads(body)
        except ValueError as e:
            raise _Reject(400, f"body is not JSON: {e}") from e
        if not isinstance(request, dict):
            request = {}
        images, prompts = request.get("images"), request.get("prompts")
        if not (isinstance(images, list) and isinstance(prompts, list) and all(isinstance(p, str) for p in prompts)):
            raise _Reject(400, "body must be a JSON object with 'images' (a list of base64 PNGs) and 'prompts' "
                               "(a list of strings)")
        if len(images) > self.max_batch:
            raise _Reject(413, f"{len(images)} images is over this server's limit of {self.max_batch} per request "
                               "(--max-batch); lower the client's batch_size")
        metadata = request.get("metadata") or [{} for _ in images]
        if not isinstance(metadata, list):
            raise _Reject(400, f"'metadata' must be a list with one object per image, got {type(metadata).__name__}")
        if not len(prompts) == len(metadata) == len(images):
            raise _Reject(400, f"{len(images)} images need as many prompts (got {len(prompts)}) and metadata "
                               f"entries (got {len(metadata)})")
        decoded = []
        for i, data in enumerate(images):
            try:
                decoded.append(decode_image(data))
            except Exception as e:  # noqa: BLE001 - any undecodable image is the client's error
                raise _Reject(400, f"images[{i}] is not a base64 PNG: {type(e).__name__}: {e}") from e
        return decoded, prompts, metadata

    def log_message(self, fmt, *args):  # route access logs through logging, not stderr
        log.debug("%s " + fmt, self.address_string(), *args)


class RewardServer(ThreadingHTTPServer):
    """A thread per connection. The listen backlog holds a burst of clients: socketserver's default of 5
    lets the kernel drop further connection attempts, which clients see as one-second stalls."""

    request_queue_size = 128
    daemon_threads = True

    def handle_error(self, request, client_address):
        """One log line (a client that hung up, say) instead of a traceback on stderr."""
        log.warning("client %s: %s", client_address[0], sys.exc_info()[1])


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` reaches this machine only ('' and 0.0.0.0 mean every interface)."""
    if host == "localhost":
        return True
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host).is_loopback
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def _thread_safe(reward) -> bool:
    """Whether ``reward`` (or every component of a weighted one) declares ``thread_safe = True``."""
    components = getattr(reward, "components", None)
    if components:
        return all(_thread_safe(r) for _, r, _ in components)
    return getattr(getattr(reward, "fn", reward), "thread_safe", False) is True


def make_server(spec, host: str = "127.0.0.1", port: int = 8000, token: str | None = None,
                max_request_bytes: int = MAX_REQUEST_BYTES, max_batch: int = MAX_BATCH,
                insecure_no_token: bool = False) -> RewardServer:
    """An HTTP server scoring with the reward ``spec`` (name, dotted path, dict, or a built CheckedReward),
    bound but not yet started. ``token`` defaults to ``$LASRO_REWARD_TOKEN``; without one it binds only to
    loopback unless ``insecure_no_token``. The reward runs under a lock unless it declares
    ``thread_safe = True``: a torch model must not run from two request threads at once, while decoding and
    checking requests still proceed in parallel."""
    from lasro.rewards.registry import build_reward

    token = resolve_token(token)
    if not token and not insecure_no_token and not is_loopback(host):
        raise ValueError(
            f"refusing to serve on {host!r} without a token: anyone who reaches the port could run the reward. "
            f"Set {TOKEN_ENV}=SECRET (or pass --token SECRET) here and give clients the same (remote reward "
            f"kwargs.token or {TOKEN_ENV}); --insecure-no-token serves without one, on a network you trust")
    reward = spec if isinstance(spec, CheckedReward) else build_reward(spec)
    handler = type("RewardHandler", (_Handler,), {
        "reward": reward, "reward_name": reward.name, "token": token, "max_request_bytes": int(max_request_bytes),
        "max_batch": int(max_batch),
        "reward_lock": contextlib.nullcontext() if _thread_safe(reward) else threading.Lock()})
    server = RewardServer((host, port), handler)
    server.requires_token = bool(token)
    return server


def serve_in_thread(server: ThreadingHTTPServer, poll_interval: float = 0.5) -> threading.Thread:
    """Serve in a daemon thread; ``server.shutdown()`` returns within ``poll_interval`` seconds."""
    thread = threading.Thread(target=server.serve_forever, args=(poll_interval,), daemon=True)
    thread.start()
    return thread
