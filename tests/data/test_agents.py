"""Procedural agents: reproducible, aligned with Minipaint, honest labels."""

import numpy as np

from infinipaint.actions import RESET_ACTION, ActionStream
from infinipaint.data.agents import ACTIVITIES, KINDS, EpisodeConfig, record_episode
from infinipaint.minipaint import Minipaint

SHORT = EpisodeConfig(min_steps=120, max_steps=160)


def test_same_key_same_episode_and_no_global_randomness():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a, b = record_episode(3, 5, SHORT), record_episode(3, 5, SHORT)
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # np.random.* untouched
    for name in ("frames", "actions", "kinds", "activities", "density"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    c = record_episode(3, 6, SHORT)
    assert c.actions.shape != a.actions.shape or not np.array_equal(c.actions, a.actions)


def test_episode_alignment_replays_in_minipaint():
    ep = record_episode(0, 1, SHORT)
    T = len(ep.actions) - 1
    assert SHORT.min_steps <= T <= SHORT.max_steps
    assert ep.frames.shape == (T + 1, 224, 224, 3) and ep.frames.dtype == np.uint8
    assert ep.actions.dtype == np.int16 and tuple(ep.actions[0]) == RESET_ACTION
    assert KINDS[ep.kinds[0]] == "reset" and ACTIVITIES[ep.activities[0]] == "reset"
    app = Minipaint()
    np.testing.assert_array_equal(app.reset(), ep.frames[0])
    for t in range(1, T + 1):  # frames[t] is the frame after actions[t]
        np.testing.assert_array_equal(app.step(tuple(int(v) for v in ep.actions[t])), ep.frames[t])
    canvas = ep.frames[-1][32:]
    assert abs(ep.density[-1] - np.mean((canvas != 255).any(axis=2))) < 1e-6


def test_steps_are_a_fixed_point_of_the_stream():
    """The recorded steps already obey the ActionStream rules: replaying them changes nothing."""
    ep = record_episode(0, 2, SHORT)
    steps = [tuple(int(v) for v in a) for a in ep.actions[1:]]
    assert ActionStream.process(steps) == steps


def test_kind_labels_match_what_happened():
    ep = record_episode(0, 4, EpisodeConfig(400, 400))
    kinds = [KINDS[k] for k in ep.kinds]
    changed = [not np.array_equal(ep.frames[t], ep.frames[t - 1]) for t in range(1, len(kinds))]
    for t, (kind, ch) in enumerate(zip(kinds[1:], changed), start=1):
        if kind in ("hover", "idle", "dead_click", "nop_drag"):
            assert not ch, (t, kind)
        if ch:
            assert kind in ("draw", "erase", "slider_drag") or kind.startswith("press_"), (t, kind)
