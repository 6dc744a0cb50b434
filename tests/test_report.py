"""``report.html``: written at the end of a run and by ``lasro report``, self-contained (nothing fetched), for a
training run and for a ``lasro bench compare`` folder; missing pieces are notes, never errors."""
import json
import logging
import re
from html.parser import HTMLParser

import pytest

from lasro.bench.compare import write_results
from lasro.cli import main
from lasro.report import build_report, hacking_flags, write_report
from lasro.training import Trainer

from .browser import chromium, console_problems, needs_chromium
from .conftest import tiny_train_config

PNG_URI = "data:image/png;base64,"


class _Links(HTMLParser):
    """Every src/href value, <script> elements and <link> elements of a page."""

    def __init__(self):
        super().__init__()
        self.urls, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.urls += [v for k, v in attrs if k in ("src", "href", "srcset", "data", "poster") and v]


def assert_self_contained(html: str) -> _Links:
    parser = _Links()
    parser.feed(html)
    remote = [u for u in parser.urls if re.match(r"^\s*(https?:)?//", u, re.I)]
    assert not remote, remote
    assert "script" not in parser.tags and "link" not in parser.tags and "iframe" not in parser.tags
    assert not re.search(r"url\(\s*['\"]?\s*(https?:)?//", html, re.I)  # nothing fetched from CSS either
    assert not re.search(r"@import", html)
    return parser


@pytest.fixture(scope="module")
def finished_run(tiny_dirs, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "run"
    cfg = tiny_train_config(out, tiny_dirs["sdxl"], eval_rewards=["saturation"],
                            prompts={"final_eval": ["a red square", "a blue circle", "a green tree"],
                                     "final_eval_seeds": 1})
    Trainer(cfg).train()
    return out


def test_train_writes_a_self_contained_report(finished_run):
    html = (finished_run / "report.html").read_text()
    parser = assert_self_contained(html)
    final = json.loads((finished_run / "final_eval.json").read_text())
    # the final-eval table: every metric and step count, with the gain and its interval as in final_eval.json
    assert "Final paired evaluation" in html
    assert "training reward (jpeg_compressibility)" in html and "judge saturation" in html
    for key in ("reward_1step", "reward_2step"):
        lo, hi = final["gain"][key]["ci95"]
        assert f"{final['gain'][key]['mean']:+.4f}" in html and f"[{lo:+.4f}, {hi:+.4f}]" in html
    # curves, the hacking monitor and the pictures, all embedded
    images = [u for u in parser.urls if u.startswith("data:image/")]
    assert sum(u.startswith(PNG_URI) for u in images) >= 8
    for title in ("Held-out reward", "Held-out judge: saturation", "Surrogate and generator",
                  "Reward-hacking monitor", "Initial and tuned model, 2 steps", "Held-out samples, 2 steps, round 2"):
        assert title in html, title
    assert not [u for u in parser.urls if not u.startswith(("data:", "#"))]  # nothing but inline data and anchors
    # config and environment
    assert "jpeg_compressibility" in html and "diffusers" in html and "torch" in html
    env = json.loads((finished_run / "environment.json").read_text())
    assert env["device"] == "cpu" and env["processes"] == 1 and env["lasro"] == "0.1.0"


def test_lasro_report_rewrites_it_and_prints_the_path(finished_run, tmp_path, capsys):
    out = tmp_path / "elsewhere" / "r.html"
    assert main(["report", str(finished_run), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(out)
    html = out.read_text()
    assert_self_contained(html)
    assert "the newest checkpoint (round-000002/state.json)" in html
    assert "recorded by the training process" in html  # environment.json, not this process's guess
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err


def test_missing_pieces_are_notes_not_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    html = build_report(str(empty))
    assert "no metrics.jsonl" in html and "no final_eval.json" in html and "no config found" in html
    (empty / "metrics.jsonl").write_text("")
    assert "metrics.jsonl holds no rows yet" in build_report(str(empty))
    # a baseline without surrogate metrics, a killed run's half-written last line
    baseline = tmp_path / "ppo"
    baseline.mkdir()
    rows = [{"round": r, "reward_queries": 8 * r, "time/wall_seconds": r, "eval/reward_1step_mean": 0.1 * r,
             "eval/reward_2step_mean": 0.2 * r, "ppo/clip_fraction_2step": 0.1} for r in range(3)]
    (baseline / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"round": 3, "rew')
    config = tmp_path / "c.yaml"
    config.write_text("algorithm: {method: ppo}\nreward: saturation\n")
    html = (tmp_path / "r.html")
    write_report(str(baseline), out=str(html), config_path=str(config))
    html = html.read_text()
    assert_self_contained(html)
    assert "1 unreadable line(s) of metrics.jsonl skipped" in html
    assert "no generator/surrogate_*step" in html and "ppo/clip_fraction_Kstep" in html
    assert f"From {config}" in html and "Held-out reward" in html


def test_hacking_flags_rounds_where_the_surrogate_rose_and_a_true_reward_fell():
    rows = [{"round": 0, "train/reward_2step_mean": 0.5, "eval/reward_2step_mean": 0.5, "eval/j/reward_2step_mean": 5},
            {"round": 1, "generator/surrogate_2step": 0.1, "train/reward_2step_mean": 0.6},
            {"round": 2, "generator/surrogate_2step": 0.3, "train/reward_2step_mean": 0.55,
             "eval/reward_2step_mean": 0.52, "eval/j/reward_2step_mean": 4},
            {"round": 3, "train/reward_2step_mean": 0.50},  # gated: no generator step, the surrogate did not rise
            {"round": 4, "generator/surrogate_2step": 0.2, "train/reward_2step_mean": 0.4,
             "eval/reward_2step_mean": 0.3, "eval/j/reward_2step_mean": 3}]
    flags = hacking_flags(rows, [2])
    assert [(f["round"], f["steps"]) for f in flags] == [(2, 2)]  # round 4: the surrogate fell too
    assert [s["label"] for s in flags[0]["fell"]] == ["fresh samples (train)"]
    assert flags[0]["surrogate_change"] == pytest.approx(0.2) and flags[0]["fell"][0]["change"] == pytest.approx(-0.05)
    rows[4]["generator/surrogate_2step"] = 0.9
    flags = hacking_flags(rows, [2])
    assert [f["round"] for f in flags] == [2, 4]
    # eval and the judge compare rounds 2 and 4, the surrogate's latest values at those rounds (0.3 -> 0.9)
    assert [s["key"] for s in flags[1]["fell"]] == ["train/reward_2step_mean", "eval/reward_2step_mean",
                                                    "eval/j/reward_2step_mean"]
    assert hacking_flags([{"round": 0, "eval/reward_2step_mean": 1.0}], [2]) == []


def _curve(*rewards):
    return [{"round": i, "queries": 8 * i, "wall_seconds": float(i), "reward_1step": r, "reward_2step": r}
            for i, r in enumerate(rewards)]


def _final(gain):
    return {"samples": 6, "tuned": {"reward_2step_mean": 0.5 + gain}, "initial": {"reward_2step_mean": 0.5},
            "gain": {"reward_2step": {"mean": gain, "ci95": [gain - 0.01, gain + 0.01]}}}


def test_report_of_a_bench_compare_folder_renders_its_table_and_curves(tmp_path, capsys):
    out = tmp_path / "cmp"
    out.mkdir()
    results = {"config": "c.yaml", "preset": None, "queries": 16, "eval_every_queries": 8, "seeds": [0, 1],
               "methods": {
                   "lasro": {"method": "lasro", "overrides": {}, "skipped": None,
                             "runs": [{"seed": 0, "curve": _curve(0.1, 0.3, 0.5), "final_eval": _final(0.04)},
                                      {"seed": 1, "curve": _curve(0.1, 0.2, 0.4), "final_eval": _final(0.02)}]},
                   "ppo": {"method": "ppo", "overrides": {"ppo": {"epochs": 4}}, "skipped": None,
                           "runs": [{"seed": 0, "curve": _curve(0.1, 0.2, 0.3), "final_eval": _final(0.01)},
                                    {"seed": 1, "curve": _curve(0.1, 0.1, 0.2), "final_eval": _final(-0.01)}]},
                   "draft": {"method": "draft", "overrides": {}, "skipped": "the reward is not differentiable",
                             "runs": []}}}
    write_results(results, str(out))  # results.json with its summary, results.md and the two curves
    run_report = out / "lasro" / "seed-0" / "report.html"
    run_report.parent.mkdir(parents=True)
    run_report.write_text("<html></html>")
    assert main(["report", str(out)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(out / "report.html")
    html = (out / "report.html").read_text()
    parser = assert_self_contained(html)
    assert "lasro bench compare" in html and "Comparison" in html
    assert re.search(r"<td>ppo</td><td class=\"num\">2</td><td class=\"num\">16</td>", html)
    assert "0.45 ± 0.071" in html  # lasro's final 2-step reward over the seeds, as results.md has it
    assert "skipped: the reward is not differentiable" in html
    assert "Paired final evaluation" in html and "(2/2 above zero)" in html
    assert sum(u.startswith(PNG_URI) for u in parser.urls) == 2  # curves_queries.png, curves_wall.png
    assert 'href="lasro/seed-0/report.html"' in html  # each run's own report, a relative link


def test_a_failing_report_only_warns(tiny_dirs, tmp_path, monkeypatch, caplog):
    import lasro.training.trainer as trainer_module

    def broken(*args, **kwargs):
        raise RuntimeError("no space left")

    monkeypatch.setattr(trainer_module, "write_report", broken)
    cfg = tiny_train_config(tmp_path / "run", tiny_dirs["sdxl"], algorithm={"rounds": 1})
    with caplog.at_level(logging.WARNING, logger="lasro"):
        rows = Trainer(cfg).train()
    assert rows[-1]["round"] == 1 and (tmp_path / "run" / "lora").exists()
    assert "report.html not written: RuntimeError: no space left" in caplog.text


@needs_chromium
def test_report_opens_from_a_file_url_without_console_errors_or_requests(finished_run):
    driver = chromium()
    try:
        driver.get((finished_run / "report.html").as_uri())
        assert driver.title.startswith("lasro run")
        text = driver.execute_script("return document.body.innerText")
        gain = json.loads((finished_run / "final_eval.json").read_text())["gain"]["reward_2step"]
        assert "Final paired evaluation" in text and f"{gain['mean']:+.4f}" in text  # the key number, as shown
        errors = console_problems(driver)
        assert not errors, errors
        # every image decoded (a broken data: URI has naturalWidth 0)
        broken = driver.execute_script(
            "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length")
        counted = driver.execute_script("return document.images.length")
        assert counted >= 8 and broken == 0
        resources = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith('data:'))")
        assert resources == []
        shot = finished_run / "report_screenshot.png"
        assert driver.save_screenshot(str(shot)) and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        driver.quit()
