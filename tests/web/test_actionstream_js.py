"""The browser page's ActionStream (`web/site/actionstream.js`, run under node) gives exactly the steps
of Python's `infinipaint.actions.ActionStream`, and refuses the same bad samples."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from infinipaint.actions import DEAD_ZONE, MAX_STEP, ActionStream, substeps

NODE = shutil.which("node")
CHECK = Path(__file__).with_name("actionstream_check.mjs")
SCREEN = 224
N_STREAMS = 200

pytestmark = pytest.mark.skipif(NODE is None, reason="node (>= 20) is not on PATH: cannot run actionstream.js")

# Moves hitting the rules' boundaries: inside the dead zone, exactly 4 and 12 px (on an axis: the only
# integer moves of those lengths), just over 4 and 12, and lengths that are exact multiples of 12
# (ceil(hypot / 12) must not be off by one: 36-48-60, 60-144-156, 72-96-120, 84-80-116...).
SPECIAL_MOVES = [(1, 0), (2, 2), (3, 2), (4, 0), (0, 4), (3, 3), (4, 1), (12, 0), (0, 12), (12, 1), (8, 9),
                 (9, 9), (24, 0), (36, 48), (60, 144), (72, 96), (96, 72), (144, 60), (5, 12), (36, 160)]


def random_stream(rng: np.random.Generator) -> list[list[int]]:
    """Raw pointer samples mixing every kind of move, press and release."""
    x, y = (int(v) for v in rng.integers(0, SCREEN, 2))
    down = int(rng.integers(0, 2))
    samples = [[x, y, down]]
    for _ in range(int(rng.integers(20, 80))):
        kind = rng.choice(["tiny", "special", "walk", "jump", "edge", "pause", "toggle", "click"],
                          p=[0.2, 0.2, 0.2, 0.08, 0.07, 0.1, 0.1, 0.05])
        if kind == "tiny":  # inside or at the dead zone
            dx, dy = (int(v) for v in rng.integers(-4, 5, 2))
        elif kind == "special":
            dx, dy = SPECIAL_MOVES[int(rng.integers(len(SPECIAL_MOVES)))]
            if rng.random() < 0.5:
                dx, dy = dy, dx
            dx, dy = dx * int(rng.choice([-1, 1])), dy * int(rng.choice([-1, 1]))
        elif kind == "walk":
            dx, dy = (int(v) for v in rng.integers(-30, 31, 2))
        elif kind == "jump":  # anywhere, often corner to corner
            tx, ty = (int(v) for v in rng.choice([0, 223, int(rng.integers(SCREEN))], 2))
            dx, dy = tx - x, ty - y
        elif kind == "edge":
            dx, dy = 0, 0
            if rng.random() < 0.5:
                dx = int(rng.choice([0, 223])) - x
            else:
                dy = int(rng.choice([0, 223])) - y
        else:
            dx, dy = 0, 0
        # Stay on screen: reflect a move that leaves it, clip if that leaves it too.
        if not 0 <= x + dx < SCREEN:
            dx = -dx
        if not 0 <= y + dy < SCREEN:
            dy = -dy
        x, y = min(max(x + dx, 0), SCREEN - 1), min(max(y + dy, 0), SCREEN - 1)
        if kind == "pause":
            samples += [[x, y, down]] * int(rng.integers(1, 5))
            continue
        if kind == "toggle" or (kind != "click" and rng.random() < 0.08):
            down = 1 - down
        if kind == "click":  # a press and the release right after it, same place or a tiny move
            samples.append([x, y, 1])
            x = min(max(x + int(rng.integers(-5, 6)), 0), SCREEN - 1)
            down = 0
        samples.append([x, y, down])
    return samples


def run_node(request: dict) -> dict:
    done = subprocess.run([NODE, str(CHECK)], input=json.dumps(request), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def step_kinds(steps: list[tuple[int, int, int]]) -> dict[str, int]:
    """How many steps of a stream are drags, presses, idle steps (releases) and hovers."""
    kinds = {"drag": 0, "press": 0, "idle": 0, "hover": 0}
    prev = None
    for step in steps:
        d, pd = step[2], None if prev is None else prev[2]
        kinds[("drag" if pd == 1 else "press") if d else ("idle" if pd == 1 else "hover")] += 1
        prev = step
    return kinds


def test_same_steps_as_python_on_random_streams():
    rng = np.random.default_rng(20240611)
    streams = [random_stream(rng) for _ in range(N_STREAMS)]
    expected = [[list(s) for s in ActionStream.process(samples)] for samples in streams]
    got = run_node({"streams": streams})["steps"]
    assert len(got) == N_STREAMS
    for i, (samples, want, have) in enumerate(zip(streams, expected, got)):
        assert have == want, f"stream {i} differs: samples {samples}"

    # Not vacuous: every rule was exercised, boundaries included.
    kinds = {k: sum(step_kinds(s)[k] for s in expected) for k in ("drag", "press", "idle", "hover")}
    assert kinds["drag"] > 5000 and kinds["hover"] > 5000, kinds
    assert kinds["press"] > 800 and kinds["idle"] > 800, kinds
    clicks = sum(a[2] == 1 and b[2] == 0 and a[:2] == b[:2] for s in expected for a, b in zip(s, s[1:]))
    assert clicks > 100, clicks  # releases with no drag between press and idle step
    lengths = [math.hypot(b[0] - a[0], b[1] - a[1]) for s in expected for a, b in zip(s, s[1:]) if a[2] == b[2]]
    assert min(lengths) > DEAD_ZONE and max(lengths) == MAX_STEP
    assert sum(length == MAX_STEP for length in lengths) > 100
    assert sum(length <= DEAD_ZONE + 1 for length in lengths) > 20
    samples = [s for stream in streams for s in stream]
    assert {0, 223} <= {s[0] for s in samples} and {0, 223} <= {s[1] for s in samples}
    pauses = sum(a == b for stream in streams for a, b in zip(stream, stream[1:]))
    assert pauses > 200, pauses


def boundary_moves() -> list[tuple[int, int, int, int]]:
    """Segments whose squared length is next to (12 m)^2, in every direction, plus all short ones."""
    moves = set()
    for dx in range(-223, 224):
        for dy in range(-223, 224):
            k = dx * dx + dy * dy
            m = math.isqrt(k) // MAX_STEP
            near = any(abs(k - (MAX_STEP * j) ** 2) <= 1 for j in (m, m + 1))
            if near or (abs(dx) <= 30 and abs(dy) <= 30):
                x0, y0 = (0 if dx >= 0 else 223), (0 if dy >= 0 else 223)
                moves.add((x0, y0, x0 + dx, y0 + dy))
    return sorted(moves)


def test_same_substeps_at_length_boundaries():
    moves = boundary_moves()
    assert len(moves) > 4000
    got = run_node({"substeps": moves})["substeps"]
    want = [[list(p) for p in substeps(*m)] for m in moves]
    bad = [m for m, g, w in zip(moves, got, want) if g != w]
    assert not bad, f"{len(bad)} segments differ, e.g. {bad[:5]}"


BAD = [[-1, 5, 0], [224, 5, 0], [5, -1, 1], [5, 224, 1], [5, 5, 2], [5, 5, -1], [1.5, 5, 0], [5, 2.5, 0],
       [5, 5, 0.5], ["5", 5, 0], [5, "a", 0], [5, 5, "1"], [None, 5, 0], [[5], 5, 0], [1e300, 5, 0]]
GOOD = [[0, 0, 0], [223, 223, 1], [0, 223, 1], [1.0, 2.0, 1.0], [True, 5, False]]


def test_refuses_the_same_bad_samples():
    def python_throws(sample) -> bool:
        try:
            ActionStream().push(*sample)
        except ValueError:
            return True
        return False

    samples = BAD + GOOD
    want = [python_throws(s) for s in samples]
    assert want == [True] * len(BAD) + [False] * len(GOOD)
    assert run_node({"bad": samples})["throws"] == want
