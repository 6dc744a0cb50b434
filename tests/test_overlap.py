import threading
import time

import pytest

from lasro.rollouts.overlap import BackgroundScorer


def test_background_results_equal_inline_results_in_order():
    score = lambda x, k: [v * k for v in x]  # noqa: E731
    chunks = [([1, 2], 3), ([4], 5), ([6, 7, 8], 2)]
    outs = []
    for enabled in (False, True):
        with BackgroundScorer(score, enabled=enabled) as s:
            for c in chunks:
                s.submit(*c)
            outs.append(s.results())
    assert outs[0] == outs[1] == [[3, 6], [20], [12, 14, 16]]


def test_scoring_runs_while_the_caller_works_and_pending_chunks_are_bounded():
    running, seen = threading.Event(), []

    def score(i):
        running.set()
        time.sleep(0.05)
        seen.append(i)
        return i

    with BackgroundScorer(score, max_pending=1) as s:
        s.submit(0)
        assert running.wait(1.0)  # the worker started on chunk 0 ...
        assert seen == []  # ... and submit returned before it finished
        s.submit(1)  # waits for chunk 0 first: one chunk in flight at most
        assert seen == [0]
        assert s.results() == [0, 1]


def test_the_first_error_is_raised_by_results():
    def score(i):
        if i == 1:
            raise ConnectionError("reward server went away")
        return i

    with BackgroundScorer(score) as s:
        s.submit(0)
        s.submit(1)
        with pytest.raises(ConnectionError, match="went away"):
            s.results()
