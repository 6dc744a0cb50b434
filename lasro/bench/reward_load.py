"""``lasro bench reward-load``: throughput and tail latency of ``serve-reward`` under concurrent clients.

Each client thread sends its own images through the ``remote`` reward client with one try per request
(a retry would hide a fault) and checks every answer against the reward scored locally, so a request
counts as failed if it raised or came back with someone else's or wrong scores.
"""
from __future__ import annotations

import os
import threading
import time

import numpy as np
from PIL import Image

from lasro.rewards import build_reward
from lasro.rewards.remote import make_server, serve_in_thread


def _images(n: int, size: int, seed: int) -> list[Image.Image]:
    """Gradients plus noise, different per seed: about as compressible as generated images, and the
    scores tell one client's batch from another's."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, size)[None, :, None] * rng.uniform(0.2, 1.0, (1, 1, 3))
    return [Image.fromarray(np.clip(ramp + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8))
            for _ in range(n)]


def _split(total: int, parts: int) -> list[int]:
    """``total`` requests over ``parts`` clients, as evenly as integers allow."""
    return [total // parts + (i < total % parts) for i in range(parts)]


def _client(url: str, timeout: float, count: int, images, expected, latencies: list, errors: list) -> None:
    """Send ``count`` requests one after another; record each latency, and each failure's text."""
    remote = build_reward({"name": "remote", "kwargs": {"url": url, "retries": 1, "timeout": timeout,
                                                        "batch_size": len(images)}})
    prompts = ["a load test"] * len(images)
    for _ in range(count):
        start = time.perf_counter()
        try:
            scores = remote(images, prompts).scores
            if not np.allclose(scores, expected):
                errors.append(f"wrong scores: {scores.tolist()[:3]}... expected {expected.tolist()[:3]}...")
        except Exception as e:  # noqa: BLE001 - every failure counts, of whatever kind
            errors.append(f"{type(e).__name__}: {e}")
        latencies.append(time.perf_counter() - start)


def bench_reward_load(clients: int = 8, requests: int = 400, batch: int = 8, reward: str = "jpeg_compressibility",
                      size: int = 64, url: str | None = None, timeout: float = 60.0) -> dict:
    """Serve ``reward`` on loopback in this process (or load the server at ``url``), run ``clients`` threads
    sending ``requests`` requests of ``batch`` images in all, and report throughput and latency percentiles.
    In-process, clients and server share one interpreter (and its GIL): a separate server does at least as well."""
    if clients < 1 or requests < clients or batch < 1:
        raise ValueError(f"need clients >= 1, requests >= clients and batch >= 1; got {clients}, {requests}, {batch}")
    local = build_reward(reward)
    server = None if url else make_server(local, "127.0.0.1", 0)
    if server:
        serve_in_thread(server, poll_interval=0.05)
        url = f"http://127.0.0.1:{server.server_address[1]}/"
    batches = [_images(batch, size, seed) for seed in range(clients)]
    expected = [local(ims, ["a load test"] * batch).scores for ims in batches]
    latencies: list[float] = []
    errors: list[str] = []
    threads = [threading.Thread(target=_client, args=(url, timeout, n, batches[i], expected[i], latencies, errors))
               for i, n in enumerate(_split(requests, clients))]
    start = time.perf_counter()
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
    finally:
        if server:
            server.shutdown()
            server.server_close()
    ms = np.asarray(latencies) * 1000
    return {
        "reward": reward, "server": "in-process loopback" if server else url, "clients": clients,
        "requests": requests, "batch": batch, "image_size": size, "failed": len(errors),
        "wall_s": round(wall, 3), "requests_per_s": round(requests / wall, 1),
        "images_per_s": round(requests * batch / wall, 1), "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2), "max_ms": round(float(ms.max()), 2),
        "cpus": os.cpu_count(), "first_error": errors[0] if errors else None,
    }
