"""The vote store and the labelling app: durable votes, undo, export/import, and what the server refuses."""
from __future__ import annotations

import json
import os
import sqlite3

import numpy as np
import pytest
from PIL import Image

from lasro.bench.human import free_port
from lasro.labeling.votes import Pair, VoteError, VoteStore

from .browser import chromium, console_problems, needs_chromium


def make_folder(folder, n_pairs=3, batch="b0"):
    """A label folder with ``n_pairs`` queued pairs of small solid-colour PNGs."""
    store = VoteStore(str(folder))
    pairs = []
    rng = np.random.default_rng(0)
    for i in range(n_pairs):
        names = []
        for k in range(2):
            name = f"{batch}-{i}-{k}.png"
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(os.path.join(store.images, name))
            names.append(name)
        pairs.append(Pair(f"{batch}-{i}", batch, f"prompt {i}", *names))
    store.add_pairs(pairs)
    return store


def test_votes_survive_reopening_and_undo_reopens_the_pair(tmp_path):
    store = make_folder(tmp_path)
    assert store.next_pending().pair_id == "b0-0"
    store.vote("b0-0", "left")
    store.vote("b0-1", "tie")
    assert store.next_pending().pair_id == "b0-2"
    store.close()  # as if the process died: the votes are already committed
    raw = sqlite3.connect(tmp_path / "votes.sqlite")
    assert raw.execute("SELECT COUNT(*) FROM votes WHERE undone = 0").fetchone()[0] == 2
    raw.close()
    store = VoteStore(str(tmp_path))
    assert store.choices() == {"b0-0": "left", "b0-1": "tie"}
    assert store.undo() == "b0-1"
    assert store.next_pending().pair_id == "b0-1"
    assert store.progress("b0") == (1, 3)
    store.vote("b0-0", "right")  # a second vote on a pair replaces the first
    assert store.choices()["b0-0"] == "right"


def test_bad_input_is_named(tmp_path):
    store = make_folder(tmp_path)
    with pytest.raises(VoteError, match="not one of"):
        store.vote("b0-0", "maybe")
    with pytest.raises(VoteError, match="no pair"):
        store.vote("nope", "left")
    with pytest.raises(VoteError, match="safe name"):
        store.add_pairs([Pair("../x", "b", "p", "a.png", "b.png")])
    with pytest.raises(VoteError, match="already queued"):
        store.add_pairs([Pair("b0-0", "b0", "p", "b0-0-0.png", "b0-0-1.png")])
    with pytest.raises(VoteError, match="write the images"):
        store.add_pairs([Pair("new", "b0", "p", "missing.png", "b0-0-1.png")])


def test_export_import_round_trip(tmp_path):
    src = make_folder(tmp_path / "a")
    src.vote("b0-0", "left")
    src.vote("b0-1", "right")
    src.vote("b0-2", "skip")
    out = tmp_path / "a" / "votes.jsonl"
    assert src.export_jsonl(str(out)) == 2  # the skip is not a preference
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["label_0"], r["label_1"]) for r in rows] == [(1.0, 0.0), (0.0, 1.0)]
    assert rows[0]["caption"] == "prompt 0" and rows[0]["image_0"] == "images/b0-0-0.png"
    dst = VoteStore(str(tmp_path / "b"))
    assert dst.import_jsonl(str(out)) == 2
    assert dst.choices() == {"b0-0": "left", "b0-1": "right"}
    assert dst.import_jsonl(str(out)) == 0  # importing twice adds nothing
    waiting = make_folder(tmp_path / "c")  # the same pairs queued and unvoted: a run waiting for them
    assert waiting.import_jsonl(str(out)) == 2 and waiting.progress() == (2, 3)
    bad = tmp_path / "a" / "bad.jsonl"
    bad.write_text(json.dumps({**rows[0], "pair_id": "x", "image_0": "../../etc/passwd"}) + "\n")
    with pytest.raises(VoteError, match="leaves"):
        dst.import_jsonl(str(bad))
    bad.write_text('{"pair_id": "y"}\n')
    with pytest.raises(VoteError, match="bad.jsonl:1: not a vote line"):
        dst.import_jsonl(str(bad))


@pytest.fixture
def client(tmp_path):
    from fastapi.testclient import TestClient

    from lasro.labeling.app import create_app

    make_folder(tmp_path).close()
    (tmp_path / "secret.png").write_bytes(b"not for the web")
    with TestClient(create_app(str(tmp_path)), base_url="http://127.0.0.1:8765") as c:
        yield c


SAME = {"Origin": "http://127.0.0.1:8765"}


def test_app_serves_pairs_and_records_votes(client):
    state = client.get("/api/next").json()
    assert state["pair"]["pair_id"] == "b0-0" and state["total"] == 3
    assert client.get("/" + state["pair"]["image_0"]).status_code == 200
    state = client.post("/api/vote", json={"pair_id": "b0-0", "choice": "left"}, headers=SAME).json()
    assert state["voted"] == 1 and state["pair"]["pair_id"] == "b0-1"
    state = client.post("/api/undo", json={}, headers=SAME).json()
    assert state["undone"] == "b0-0" and state["voted"] == 0
    assert client.post("/api/vote", json={"pair_id": "b0-0", "choice": "maybe"}, headers=SAME).status_code == 422
    assert client.post("/api/vote", json={"pair_id": "zz", "choice": "left"}, headers=SAME).status_code == 404
    assert "which image is better" in client.get("/").text


def test_app_refuses_paths_outside_its_images_and_cross_origin_posts(client):
    for path in ("/images/../secret.png", "/images/..%2Fsecret.png", "/images/%2E%2E%2Fsecret.png",
                 "/images/..%5Csecret.png", "/images/.hidden.png", "/images/votes.sqlite", "/secret.png",
                 "/votes.sqlite"):
        r = client.get(path)
        assert r.status_code == 404, path
        assert b"not for the web" not in r.content
    vote = {"pair_id": "b0-0", "choice": "left"}
    assert client.post("/api/vote", json=vote).status_code == 403  # no Origin at all
    assert client.post("/api/vote", json=vote, headers={"Origin": "http://evil.example"}).status_code == 403
    assert client.post("/api/vote", json=vote, headers={"Origin": "http://127.0.0.1:9999"}).status_code == 403
    assert client.post("/api/vote", content="pair_id=b0-0&choice=left", headers={
        **SAME, "Content-Type": "application/x-www-form-urlencoded"}).status_code == 415
    assert client.get("/api/next").json()["voted"] == 0  # none of these counted
    # DNS rebinding: a page served as evil.example that resolves to 127.0.0.1 sends its own name as Host
    rebound = {"Host": "evil.example:8765", "Origin": "http://evil.example:8765"}
    assert client.get("/api/next", headers=rebound).status_code == 400
    assert client.post("/api/vote", json=vote, headers=rebound).status_code == 400
    assert client.get("/api/next").headers["x-content-type-options"] == "nosniff"


def test_undo_never_reaches_a_batch_the_trainer_used(tmp_path):
    store = make_folder(tmp_path, batch="b0")
    for p in store.pairs():
        store.vote(p.pair_id, "left")
    store.mark_consumed("b0")
    assert store.undo() is None and store.progress() == (3, 3)


def test_waiting_for_votes_stops_on_request(tmp_path):
    store = make_folder(tmp_path)
    with pytest.raises(InterruptedError, match="3 of 3 pairs"):
        store.wait_for("b0", poll=0.01, should_stop=lambda: True)


def start_label_server(folder, port):
    """``lasro label serve`` in its own process, ready when /health answers."""
    import subprocess
    import sys
    import time
    import urllib.request

    proc = subprocess.Popen([sys.executable, "-m", "lasro.cli", "label", "serve", str(folder), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(proc.stdout.read().decode()) from None
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the label server did not start")


@needs_chromium
def test_labelling_in_a_browser_by_click_and_key_survives_a_killed_server(tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    make_folder(tmp_path, n_pairs=6).close()
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    server = start_label_server(tmp_path, port)
    driver = chromium()

    def showing(pair_id):
        WebDriverWait(driver, 20).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-pair")
                                        == pair_id, message=f"the page never showed pair {pair_id}")

    try:
        driver.get(url)
        showing("b0-0")
        assert driver.find_element(By.ID, "prompt").text == "prompt 0"
        assert driver.execute_script("return Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
        driver.find_element(By.ID, "left").click()  # the image itself
        showing("b0-1")
        body = driver.find_element(By.TAG_NAME, "body")
        body.send_keys(Keys.ARROW_RIGHT)
        showing("b0-2")
        body.send_keys("t")
        showing("b0-3")
        driver.find_element(By.ID, "btn-undo").click()  # withdraws the tie: b0-2 again
        showing("b0-2")
        body.send_keys("s")
        showing("b0-3")
        assert driver.find_element(By.ID, "progress").text == "3 / 6 voted"
        server.kill()  # SIGKILL: no shutdown handler runs
        server.wait()
        with VoteStore(str(tmp_path)) as store:
            assert store.choices() == {"b0-0": "left", "b0-1": "right", "b0-2": "skip"}
        server = start_label_server(tmp_path, port)
        driver.refresh()
        showing("b0-3")  # the session goes on where it stopped
        driver.find_element(By.ID, "btn-right").click()
        showing("b0-4")
        assert driver.find_element(By.ID, "progress").text == "4 / 6 voted"
        problems = console_problems(driver)
        assert not problems, problems
    finally:
        driver.quit()
        server.kill()
        server.wait()
    with VoteStore(str(tmp_path)) as store:
        assert store.choices() == {"b0-0": "left", "b0-1": "right", "b0-2": "skip", "b0-3": "right"}


def test_human_reward_pairs_images_waits_for_votes_and_reuses_a_batch(tmp_path):
    import threading

    from lasro.rewards import RewardError
    from lasro.rewards.human import HumanReward

    reward = HumanReward(dir=str(tmp_path), serve=False, poll=0.01)
    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)) for _ in range(4)]
    prompts, meta = ["a", "a", "b", "b"], [{"steps": 1}] * 4
    got = {}
    worker = threading.Thread(target=lambda: got.update(out=reward(images, prompts, meta)))
    worker.start()
    for _ in range(500):
        if reward.store.progress()[1] == 2:
            break
        threading.Event().wait(0.01)
    pending = [p.pair_id for p in reward.store.pairs()]
    assert len(pending) == 2 and worker.is_alive()  # it waits for people
    reward.store.vote(pending[0], "right")
    reward.store.vote(pending[1], "tie")
    worker.join(timeout=10)
    scores, info = got["out"]
    assert list(scores) == [0.0, 1.0, 0.5, 0.5]
    group = info["comparable_group"]
    assert group[0] == group[1] != group[2] == group[3] and group.min() > 0
    again, _ = reward(images, prompts, meta)  # a resumed run regenerates the same batch: no new question
    assert list(again) == list(scores) and reward.store.progress() == (2, 2)
    with pytest.raises(RewardError, match="exactly two"):
        reward(images[:3], ["a", "a", "a"], [{"steps": 1}] * 3)
    assert reward.store.undo() is None  # the batch was handed to the trainer


def test_reward_human_trains_lasro_on_the_votes_alone(tiny_dirs, tmp_path):
    from lasro.bench.simulated_labeller import SimulatedLabeller
    from lasro.rollouts import ranked_pairs
    from lasro.training import Trainer

    from .conftest import tiny_train_config

    port, labels = free_port(), tmp_path / "labels"
    cfg = tiny_train_config(tmp_path / "run", tiny_dirs["sdxl"], eval_rewards=["saturation"], reward={
        "name": "human", "kwargs": {"dir": str(labels), "port": port, "timeout": 120, "poll": 0.02}})
    labeller = SimulatedLabeller(f"http://127.0.0.1:{port}/", rule="saturation", poll=0.02).start()
    try:
        trainer = Trainer(cfg)
        rows = trainer.train()
    finally:
        labeller.stop()
    with VoteStore(str(labels)) as store:
        voted, total = store.progress()
        decisive = sum(c in ("left", "right") for c in store.choices().values())
    # 2 prompts x 2 noises x 2 step counts a collection = 4 pairs; 2 pre-training collections and 2 rounds
    assert voted == total == labeller.votes == 16
    buf = trainer.method.buffer
    win, lose = ranked_pairs(buf.prompts, buf.steps, buf.rewards, 0.0, buf.groups)
    assert len(win) == decisive  # the surrogate's pairs are the voted pairs, never two images of two votes
    assert (buf.groups[win] == buf.groups[lose]).all()
    assert len(ranked_pairs(buf.prompts, buf.steps, buf.rewards)[0]) > decisive  # what ignoring the groups would add
    last = rows[-1]
    assert last["eval/reward_2step_mean"] == last["eval/saturation/reward_2step_mean"]  # the judge scores evaluations


def test_bench_human_reports_votes_and_the_rules_gain_and_resumes(tiny_dirs, tmp_path):
    import yaml

    from lasro.bench.human import bench_human
    from lasro.config import config_to_dict

    from .conftest import tiny_train_config

    cfg = tiny_train_config(tmp_path / "unused", tiny_dirs["sdxl"], prompts={"final_eval": ["a red square"],
                                                                            "final_eval_seeds": 2})
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config_to_dict(cfg)))
    rows = bench_human(str(path), rule="saturation", votes=12, seeds=(0,), out=str(tmp_path / "bench"))
    assert rows[0]["votes"] >= 12 and rows[0]["rule"] == "saturation" and "gain_2step" in rows[0]
    assert (tmp_path / "bench" / "human.md").read_text().count("| 0 | saturation |") == 1
    assert bench_human(str(path), rule="saturation", votes=12, seeds=(0,), out=str(tmp_path / "bench")) == rows


def test_the_store_takes_votes_from_many_threads_at_once(tmp_path):
    """The app's request threads (two tabs, a laptop and a phone) and the trainer share one connection."""
    import threading

    store = make_folder(tmp_path, n_pairs=40)
    ids = [p.pair_id for p in store.pairs()]
    errors = []

    def voter(mine):
        try:
            for pair_id in mine:
                store.vote(pair_id, "left")
                store.progress()
                store.next_pending()
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=voter, args=(ids[k::4],)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and store.progress() == (40, 40)
