"""The remote reward client against `serve-reward`'s server on loopback; retries and clear failures."""
import json
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from lasro.demo import shapes
from lasro.rewards import RewardError, build_reward
from lasro.rewards.remote import make_server, serve_in_thread


def _scene(seed):
    return shapes.sample_scene(np.random.default_rng(seed), "train")


@pytest.fixture()
def server():
    srv = make_server("shapes_detector", "127.0.0.1", 0)
    serve_in_thread(srv)
    yield srv
    srv.shutdown()
    srv.server_close()


def _url(srv):
    return f"http://127.0.0.1:{srv.server_address[1]}/"


def test_remote_scores_equal_local_scores_and_info(server):
    images, prompts = zip(*[_scene(s) for s in range(5)])
    prompts = list(prompts[:4]) + ["a red circle"]  # the last one will not match
    local = build_reward("shapes_detector")(list(images), prompts)
    remote = build_reward({"name": "remote", "kwargs": {"url": _url(server), "batch_size": 2}})
    out = remote(list(images), prompts, [{"steps": 1}] * 5)
    np.testing.assert_allclose(out.scores, local.scores)
    np.testing.assert_allclose(out.info["exact_match"], local.info["exact_match"])
    with urllib.request.urlopen(_url(server)) as r:
        assert json.loads(r.read()) == {"reward": "shapes_detector"}


def test_server_errors_come_back_named_and_are_not_retried_when_the_request_is_bad(server):
    remote = build_reward({"name": "remote", "kwargs": {"url": _url(server), "retries": 3, "backoff": 0.01}})
    with pytest.raises(RewardError, match="HTTP 500: .*names no shapes-domain objects"):
        remote([Image.new("RGB", (64, 64))], ["a photo of a cat"])
    req = urllib.request.Request(_url(server), data=b"not json", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req)
    assert e.value.code == 400


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


def test_serve_reward_command_binds_loopback_and_serves():
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "lasro.cli", "serve-reward", "shapes_detector", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in line
        image, prompt = _scene(1)
        remote = build_reward({"name": "remote", "kwargs": {"url": f"http://127.0.0.1:{port}/"}})
        assert remote([image], [prompt]).scores[0] == 1.0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
