"""`lasro bench reward-load`: a small loopback load test in which no request may fail."""
import json

import pytest

from lasro.bench.reward_load import bench_reward_load
from lasro.cli import main
from lasro.rewards.remote import TOKEN_ENV

FIELDS = {"reward", "server", "clients", "requests", "batch", "image_size", "failed", "wall_s", "requests_per_s",
          "images_per_s", "p50_ms", "p99_ms", "max_ms", "cpus", "first_error"}


@pytest.fixture(autouse=True)
def _no_token_from_the_environment(monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)


def test_four_clients_forty_requests_none_fails():
    out = bench_reward_load(clients=4, requests=40, batch=4)
    assert set(out) == FIELDS
    assert (out["clients"], out["requests"], out["batch"], out["failed"], out["first_error"]) == (4, 40, 4, 0, None)
    assert 0 < out["p50_ms"] <= out["p99_ms"] <= out["max_ms"] and out["requests_per_s"] > 0
    assert out["images_per_s"] == pytest.approx(out["requests_per_s"] * 4, rel=0.01)


def test_the_command_prints_one_json_line(capsys):
    assert main(["bench", "reward-load", "--clients", "2", "--requests", "6", "--batch", "2", "--size", "32"]) == 0
    out = json.loads(capsys.readouterr().out.strip())
    assert (out["clients"], out["requests"], out["image_size"], out["failed"]) == (2, 6, 32, 0)


def test_requests_must_cover_every_client():
    with pytest.raises(ValueError, match="requests >= clients"):
        bench_reward_load(clients=4, requests=3)
