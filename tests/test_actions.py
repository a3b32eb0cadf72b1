"""ActionStream rules (property tests)."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infinipaint.actions import DEAD_ZONE, MAX_STEP, RESET_ACTION, ActionStream, substeps
from infinipaint.minipaint import SCREEN, Minipaint


def dist(a, b) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


@st.composite
def pointer_paths(draw):
    """Raw samples as a person's pointer: a walk with small and large moves, pauses, clicks."""
    n = draw(st.integers(1, 80))
    x, y = draw(st.integers(0, SCREEN - 1)), draw(st.integers(0, SCREEN - 1))
    out = []
    for _ in range(n):
        scale = draw(st.sampled_from([0, 2, 5, 15, 60, 223]))
        x = min(max(x + draw(st.integers(-scale, scale)), 0), SCREEN - 1)
        y = min(max(y + draw(st.integers(-scale, scale)), 0), SCREEN - 1)
        out.append((x, y, draw(st.integers(0, 1))))
    return out


def runs(buttons):
    return [b for i, b in enumerate(buttons) if i == 0 or buttons[i - 1] != b]


@settings(max_examples=300, deadline=None)
@given(pointer_paths())
def test_stream_properties(samples):
    stream = ActionStream()
    steps, last = [], None
    for x, y, down in samples:
        out = stream.push(x, y, down)
        if last is None:
            assert out == [(x, y, down)]  # the first sample is always emitted
        elif not out:  # dropped: only a small move with the same button
            assert down == last[2] and dist((x, y), last) <= DEAD_ZONE
        elif down and not last[2]:
            assert out == [(x, y, 1)]  # a press is one step at the sample
        elif not down and last[2]:  # release: drag to the sample if it moved, then one idle step
            assert out[-1][2] == 0 and all(s[2] == 1 for s in out[:-1])
            assert out[-1][:2] == ((x, y) if dist((x, y), last) > DEAD_ZONE else last[:2])
        else:
            assert out[-1] == (x, y, down)  # endpoints preserved
        steps += out
        last = steps[-1] if steps else None
    assert ActionStream.process(samples) == steps
    for s in steps:
        assert all(isinstance(v, int) for v in s) and 0 <= s[0] < SCREEN and 0 <= s[1] < SCREEN and s[2] in (0, 1)
    for a, b in zip(steps, steps[1:]):
        if a[2] == b[2]:  # drag or hover: never in the dead zone, never longer than MAX_STEP
            assert DEAD_ZONE < dist(a, b) <= MAX_STEP
        if b[2] == 0 and a[2] == 1:
            assert b[:2] == a[:2]  # the idle step marks the end of a stroke, in place
        if b[2] == 0 and b[:2] == a[:2]:
            assert a[2] == 1  # idle (still, button up) only right after a stroke
    assert runs([s[2] for s in steps]) == runs([s[2] for s in samples])  # no button change lost


def test_substeps_bounds_exhaustive_small_and_long():
    for dx in range(-40, 41):
        for dy in range(-40, 41):
            if math.hypot(dx, dy) <= DEAD_ZONE:
                continue
            pts = substeps(100, 100, 100 + dx, 100 + dy)
            assert pts[-1] == (100 + dx, 100 + dy)
            prev = (100, 100)
            for p in pts:
                assert DEAD_ZONE < dist(p, prev) <= MAX_STEP
                prev = p
    pts = substeps(0, 0, 223, 223)  # rounding may need one sub-step more than ceil(d / 12)
    assert math.ceil(math.hypot(223, 223) / MAX_STEP) <= len(pts) <= math.ceil(math.hypot(223, 223) / MAX_STEP) + 1
    assert pts[-1] == (223, 223) and all(dist(a, b) <= MAX_STEP for a, b in zip([(0, 0)] + pts, pts))


def test_stream_examples_and_reset():
    s = ActionStream()
    assert s.push(10, 40, 0) == [(10, 40, 0)]
    assert s.push(12, 41, 0) == []  # dead zone
    assert s.push(13, 40, 1) == [(13, 40, 1)]  # a press is never dropped
    assert s.push(14, 40, 1) == []
    assert s.push(37, 40, 1) == [(25, 40, 1), (37, 40, 1)]  # 24 px: two 12-px sub-steps
    assert s.push(38, 41, 0) == [(37, 40, 0)]  # release in place: one idle step
    assert s.push(38, 41, 0) == []  # pauses give nothing
    assert s.push(37, 40, 1) == [(37, 40, 1)]
    assert s.push(47, 40, 0) == [(47, 40, 1), (47, 40, 0)]  # release after a move: drag, then idle
    s.reset()
    assert s.push(47, 40, 0) == [(47, 40, 0)]


@pytest.mark.parametrize("bad", [(224, 0, 0), (-1, 5, 0), (5, 5, 2), (1.5, 3, 0), (float("nan"), 3, 0)])
def test_stream_rejects_bad_samples(bad):
    with pytest.raises(ValueError):
        ActionStream().push(*bad)
    with pytest.raises(ValueError):
        ActionStream.process([(5, 5, 0), bad])


def test_reset_action_is_minipaint_reset_state():
    s = Minipaint().state
    assert RESET_ACTION == (*s.cursor, int(s.down))
