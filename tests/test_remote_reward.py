"""The remote reward client and `serve-reward`'s server on loopback: faults, limits, token, concurrency.

Fake servers (http.server on port 0) play one fault per request; small timeouts and backoff keep each
case well under a second.
"""
import contextlib
import json
import logging
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from lasro import shapes
from lasro.cli import main
from lasro.rewards import CheckedReward, RewardError, build_reward
from lasro.rewards.remote import TOKEN_ENV, encode_image, is_loopback, make_server, serve_in_thread


@pytest.fixture(autouse=True)
def _no_token_from_the_environment(monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)


def _scene(seed):
    return shapes.sample_scene(np.random.default_rng(seed), "train")


@contextlib.contextmanager
def serving(srv):
    serve_in_thread(srv, poll_interval=0.02)
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/"
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture()
def server():
    srv = make_server("shapes_detector", "127.0.0.1", 0)
    with serving(srv):
        yield srv


def _url(srv):
    return f"http://127.0.0.1:{srv.server_address[1]}/"


def _remote(url, **kwargs):
    return build_reward({"name": "remote", "kwargs": {"url": url, "timeout": 0.3, "retries": 3, "backoff": 0.01,
                                                      **kwargs}})


def _post(url, body: bytes, headers=None):
    """(status, JSON reply) of a raw POST."""
    req = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read())


def _batch(n, prompts=None):
    images = [Image.new("RGB", (16, 16), (i * 10, 0, 0)) for i in range(n)]
    return json.dumps({"images": [encode_image(im) for im in images],
                       "prompts": prompts if prompts is not None else ["x"] * n}).encode()


# --------------------------------------------------------------------------------------- fake servers

def ok(h, n):
    h.send_json(200, {"scores": [float(i) for i in range(n)], "info": {"k": [1] * n}})


def error_500(h, n):
    h.send_json(500, {"error": "CUDA out of memory"})


def bad_request(h, n):
    h.send_json(400, {"error": "images[0] is not a base64 PNG"})


def slow(h, n):
    time.sleep(1.0)  # past the client's 0.3 s timeout
    ok(h, n)


def drop(h, n):
    h.connection.shutdown(socket.SHUT_RDWR)  # no status line, no body


def malformed(h, n):
    h.send_raw(200, b'{"scores": [1.0, ')


def truncated(h, n):
    h.send_response(200)
    h.send_header("Content-Length", "100")
    h.end_headers()
    h.wfile.write(b'{"scores": [1.0, ')  # then the connection closes, 83 bytes short


def wrong_length(h, n):
    h.send_json(200, {"scores": [0.0] * (n + 1)})


def not_numbers(h, n):
    h.send_json(200, {"scores": ["high"] * n})


@contextlib.contextmanager
def fake(*actions):
    """A server answering its k-th POST with actions[k] (the last one repeats); yields (url, hits)."""
    hits = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            n = len(json.loads(self.rfile.read(int(self.headers["Content-Length"])))["images"])
            hits.append(n)
            actions[min(len(hits), len(actions)) - 1](self, n)

        def send_raw(self, code, body):
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def send_json(self, code, payload):
            self.send_raw(code, json.dumps(payload).encode())

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    with serving(srv) as url:
        yield url, hits


IMAGES = [Image.new("RGB", (8, 8))] * 2
PROMPTS = ["a", "b"]


@pytest.mark.parametrize("fault", [error_500, slow, drop, truncated, malformed], ids=lambda f: f.__name__)
def test_a_transient_fault_is_retried_and_the_batch_still_scores(fault, caplog):
    with fake(fault, ok) as (url, hits), caplog.at_level(logging.WARNING):
        out = _remote(url)(IMAGES, PROMPTS)
    np.testing.assert_array_equal(out.scores, [0.0, 1.0])
    np.testing.assert_array_equal(out.info["k"], [1, 1])
    assert hits == [2, 2] and caplog.text.count("retrying in") == 1


@pytest.mark.parametrize("fault, last", [(error_500, "HTTP 500: CUDA out of memory"), (slow, "timed out"),
                                         (drop, "RemoteDisconnected"), (malformed, "reply is not JSON")],
                         ids=["500", "slow", "drop", "malformed"])
def test_a_lasting_fault_fails_after_every_try_naming_url_tries_and_the_last_failure(fault, last):
    start = time.time()
    with fake(fault) as (url, hits), pytest.raises(RewardError) as e:
        _remote(url, retries=2)(IMAGES, PROMPTS)
    assert time.time() - start < 3
    assert f"remote reward {url} failed after 2 tries (last: " in str(e.value) and last in str(e.value)
    assert len(hits) == 2


@pytest.mark.parametrize("fault, message", [
    (wrong_length, "answered 3 scores for 2 images, expected a list of 2 numbers"),
    (not_numbers, "answered 2 scores for 2 images, expected a list of 2 numbers: {'scores': \\['high'"),
    (bad_request, r"rejected the batch: HTTP 400: images\[0\] is not a base64 PNG .*not retried"),
], ids=["wrong_length", "not_numbers", "400"])
def test_a_fault_that_would_repeat_raises_at_once(fault, message):
    with fake(fault) as (url, hits), pytest.raises(RewardError, match=message) as e:
        _remote(url)(IMAGES, PROMPTS)
    assert url in str(e.value) and len(hits) == 1


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_fails_after_retries_with_a_clear_message(caplog):
    url = f"http://127.0.0.1:{_free_port()}/"
    remote = build_reward({"name": "remote", "kwargs": {"url": url, "retries": 3, "backoff": 0.05, "timeout": 2}})
    image, prompt = _scene(0)
    start = time.time()
    with caplog.at_level("WARNING"), pytest.raises(RewardError, match=r"failed after 3 tries.*serve-reward"):
        remote([image], [prompt])
    assert time.time() - start >= 0.05 + 0.1  # backoff 0.05 then 0.1
    assert caplog.text.count("retrying in") == 2


# --------------------------------------------------------------------------------------- the real server

def test_remote_scores_equal_local_scores_and_info(server):
    images, prompts = zip(*[_scene(s) for s in range(5)])
    prompts = list(prompts[:4]) + ["a red circle"]  # the last one will not match
    local = build_reward("shapes_detector")(list(images), prompts)
    remote = build_reward({"name": "remote", "kwargs": {"url": _url(server), "batch_size": 2}})
    out = remote(list(images), prompts, [{"steps": 1}] * 5)
    np.testing.assert_allclose(out.scores, local.scores)
    np.testing.assert_allclose(out.info["exact_match"], local.info["exact_match"])
    for path in ("", "health"):
        with urllib.request.urlopen(_url(server) + path) as r:
            assert json.loads(r.read()) == {"reward": "shapes_detector"}


def test_a_failing_reward_answers_500_with_its_error_and_the_server_keeps_serving(server):
    remote = _remote(_url(server), retries=2)
    with pytest.raises(RewardError, match="HTTP 500: .*names no shapes-domain objects"):
        remote([Image.new("RGB", (64, 64))], ["a photo of a cat"])
    image, prompt = _scene(1)
    assert remote([image], [prompt]).scores[0] == 1.0


@pytest.mark.parametrize("body, message", [
    (b"not json", "body is not JSON"),
    (b'{"images": []}', "body must be a JSON object with 'images'"),
    (b'{"images": ["AAAA"], "prompts": ["x"]}', r"images\[0\] is not a base64 PNG"),
    (_batch(2, prompts=["x"]), "2 images need as many prompts"),
])
def test_a_malformed_request_gets_400_saying_what_is_wrong(server, body, message):
    code, reply = _post(_url(server), body)
    assert code == 400 and re.search(message, reply["error"])


def test_a_request_without_content_length_gets_411(server):
    with socket.create_connection(server.server_address[:2], timeout=5) as s:
        s.sendall(b"POST / HTTP/1.0\r\nContent-Type: application/json\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.0 411")


def test_limits_on_body_size_and_batch_size_answer_413_naming_the_limit():
    with serving(make_server("jpeg_compressibility", "127.0.0.1", 0, max_request_bytes=2000, max_batch=2)) as url:
        code, reply = _post(url, b"x" * 100_000)  # refused from Content-Length; the client still sees why
        assert code == 413 and "limit of 2000 bytes (--max-request-mb)" in reply["error"]
        code, reply = _post(url, _batch(3))
        assert code == 413 and "3 images is over this server's limit of 2 per request (--max-batch)" in reply["error"]
        with pytest.raises(RewardError, match=r"HTTP 413: .*lower the remote reward's kwargs.batch_size.*not retried"):
            _remote(url, batch_size=3)([Image.new("RGB", (8, 8))] * 3, ["x"] * 3)
        assert len(_remote(url, batch_size=2)([Image.new("RGB", (8, 8))] * 3, ["x"] * 3).scores) == 3


def test_a_token_is_required_on_post_and_not_on_health(monkeypatch):
    with serving(make_server("jpeg_compressibility", "127.0.0.1", 0, token="s3cret")) as url:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            code, reply = _post(url, _batch(1), headers)
            assert code == 401 and TOKEN_ENV in reply["error"]
        assert _post(url, _batch(1), {"Authorization": "Bearer s3cret"})[0] == 200
        with urllib.request.urlopen(url + "health") as r:
            assert json.loads(r.read()) == {"reward": "jpeg_compressibility"}
        with pytest.raises(RewardError, match=rf"HTTP 401: .*kwargs.token or \${TOKEN_ENV}.*not retried"):
            _remote(url)(IMAGES, PROMPTS)
        assert len(_remote(url, token="s3cret")(IMAGES, PROMPTS).scores) == 2
        monkeypatch.setenv(TOKEN_ENV, "s3cret")
        assert len(_remote(url)(IMAGES, PROMPTS).scores) == 2


def test_the_server_takes_its_token_from_the_environment(monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    with serving(make_server("jpeg_compressibility", "127.0.0.1", 0)) as url:
        assert _post(url, _batch(1))[0] == 401
        assert _post(url, _batch(1), {"Authorization": "Bearer from-env"})[0] == 200


def test_binding_beyond_loopback_without_a_token_refuses_to_start(capsys):
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("") and not is_loopback("192.168.1.5")
    with pytest.raises(ValueError, match=rf"refusing to serve on '0.0.0.0' without a token.*{TOKEN_ENV}.*--token"):
        make_server("jpeg_compressibility", "0.0.0.0", 0)
    assert main(["serve-reward", "jpeg_compressibility", "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "--insecure-no-token" in capsys.readouterr().err


class _Probe:
    """A reward that records how many calls overlap; thread_safe toggles the server's lock."""

    def __init__(self, thread_safe):
        self.thread_safe, self.active, self.peak, self.lock = thread_safe, 0, 0, threading.Lock()

    def __call__(self, images, prompts, metadata):
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        time.sleep(0.05)
        with self.lock:
            self.active -= 1
        return [float(np.asarray(im)[0, 0, 0]) for im in images]


@pytest.mark.parametrize("thread_safe", [False, True])
def test_concurrent_clients_get_their_own_scores_and_the_reward_runs_one_call_at_a_time_unless_thread_safe(
        thread_safe):
    probe = _Probe(thread_safe)
    results = {}
    with serving(make_server(CheckedReward(probe, "probe"), "127.0.0.1", 0)) as url:
        def client(i):
            images = [Image.new("RGB", (8, 8), (i * 10 + j, 0, 0)) for j in range(3)]
            results[i] = [_remote(url, timeout=10, retries=1)(images, ["x"] * 3).scores.tolist() for _ in range(3)]

        threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert results == {i: [[i * 10.0, i * 10.0 + 1, i * 10.0 + 2]] * 3 for i in range(6)}
    assert (probe.peak > 1) == thread_safe


def test_serve_reward_command_binds_loopback_and_serves():
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "lasro.cli", "serve-reward", "shapes_detector", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in line and "no token" in line
        image, prompt = _scene(1)
        remote = build_reward({"name": "remote", "kwargs": {"url": f"http://127.0.0.1:{port}/"}})
        assert remote([image], [prompt]).scores[0] == 1.0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
