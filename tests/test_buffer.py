import numpy as np
import pytest
import torch

from lasro.rollouts import ReplayBuffer, ranked_pairs
from lasro.surrogates.normalizer import EMAScoreNormalizer


def test_ranked_pairs_stay_within_prompt_and_step_count():
    prompts = ["a", "a", "a", "b", "b"]
    steps = [1, 1, 2, 1, 1]
    rewards = [0.1, 0.5, 0.9, 0.3, 0.3]
    win, lose = ranked_pairs(prompts, steps, rewards)
    assert list(zip(win.tolist(), lose.tolist())) == [(1, 0)]  # b's tie and a's 2-step sample make no pair
    w, l = ranked_pairs(prompts, steps, rewards, margin=0.5)
    assert len(w) == 0


def test_capacity_is_a_fifo_bound():
    buf = ReplayBuffer(capacity=5)
    for r in range(3):
        buf.add(torch.full((2, 1, 2, 2), float(r)), [f"p{r}"] * 2, [0.0, 1.0], [1, 1], round_index=r)
    assert len(buf) == 5 and buf.latents.shape[0] == 5
    assert buf.prompts[0] == "p0" and buf.rounds.tolist() == [0, 1, 1, 2, 2]
    assert buf.nbytes == 5 * 4 * 4


def test_pairs_are_ordered_and_recent_biased():
    buf = ReplayBuffer(capacity=100, recency_decay=0.1)
    for r in range(2):
        buf.add(torch.zeros(4, 1, 1, 1), ["p"] * 4, [0.0, 1.0, 2.0, 3.0], [2] * 4, round_index=r)
    win, lose = buf.sample_pairs(2000, np.random.default_rng(0))
    assert np.all(buf.rewards[win] > buf.rewards[lose])
    assert np.all(buf.prompts[0] == np.array(buf.prompts)[win])
    newest = np.maximum(buf.rounds[win], buf.rounds[lose])
    assert np.mean(newest == 1) > 0.85  # pairs touching round 1 dominate with decay 0.1


def test_state_round_trip():
    buf = ReplayBuffer(capacity=10)
    buf.add(torch.randn(3, 4, 2, 2), ["x", "y", "x"], [1.0, 2.0, 3.0], [1, 2, 1], round_index=4)
    other = ReplayBuffer(capacity=10)
    other.load_state_dict(buf.state_dict())
    assert other.prompts == buf.prompts and torch.equal(other.latents, buf.latents)
    assert other.rewards.tolist() == [1.0, 2.0, 3.0] and other.rounds.tolist() == [4, 4, 4]


def test_normalizer_tracks_mean_and_max_and_clips_at_one():
    n = EMAScoreNormalizer(decay=0.5)
    s = torch.tensor([0.0, 1.0, 2.0], requires_grad=True)
    out = n(s)
    assert n.mean == 1.0 and n.max == 2.0
    torch.testing.assert_close(out.detach(), torch.tensor([-1.0, 0.0, 1.0]), atol=1e-5, rtol=0)
    n.update(torch.tensor([4.0, 4.0]))
    assert n.mean == 2.5 and n.max == 3.0
    big = torch.tensor([10.0], requires_grad=True)
    n(big, update=False).sum().backward()
    assert big.grad.item() == 0.0  # clipped: no gradient where the surrogate has no data


def test_pixels_follow_the_fifo_and_are_not_saved():
    b = ReplayBuffer(capacity=4)
    for r in range(3):
        pix = torch.full((2, 3, 4, 4), r, dtype=torch.uint8)
        b.add(torch.full((2, 4, 2, 2), float(r)), ["a", "b"], [0.0, 1.0], [1, 1], round_index=r, pixels=pix)
    assert b.pixels.shape[0] == len(b) == 4
    assert b.gather_pixels(np.array([0, 3]))[:, 0, 0, 0].tolist() == [1, 2]  # round 0 was dropped
    with pytest.raises(ValueError, match="pixels with every add or with none"):
        b.add(torch.zeros(1, 4, 2, 2), ["a"], [0.0], [1], round_index=3)
    c = ReplayBuffer(capacity=4)
    c.load_state_dict(b.state_dict())
    assert "pixels" not in b.state_dict() and c.pixels is None and c.gather_pixels(np.array([0])) is None
