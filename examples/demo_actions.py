"""Write examples/demo_actions.json: a scripted ~12-second session of raw 80-ms pointer samples.

    .venv/bin/python examples/demo_actions.py      # then: infinipaint dream --replay examples/demo_actions.json

Strokes in three colours and two brush sizes, colour picks, a slider drag, the eraser across a
stroke, single clicks and a pause: what a person does in the first seconds of `infinipaint dream`.
Positions of controls come from LAYOUT; the motion is a pure function of this file (no randomness).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from infinipaint.minipaint import LAYOUT

samples: list[list[int]] = [[112, 112, 0]]  # the pointer enters where Minipaint's reset cursor is


def move(points, down: int) -> None:
    samples.extend([int(x), int(y), down] for x, y in points)


def glide(a, b, n: int, down: int) -> None:
    """n samples from a (exclusive) to b (inclusive)."""
    move([(a[0] + (b[0] - a[0]) * i / n, a[1] + (b[1] - a[1]) * i / n) for i in range(1, n + 1)], down)


def click(control: str | tuple[int, int]) -> None:
    """Move there (up), press, release."""
    p = LAYOUT.center(control) if isinstance(control, str) else control
    here = samples[-1][:2]
    glide(here, p, 3, 0)
    move([p], 1)
    move([p], 0)


def stroke(points) -> None:
    """Hover to the first point, then drag through the rest."""
    here = samples[-1][:2]
    glide(here, points[0], 2, 0)
    move([points[0]], 1)
    move(points[1:], 1)
    move([points[-1]], 0)


# 1. a black wave across the canvas (the default pen)
stroke([(30 + 9 * i, 80 + 18 * math.sin(i / 2.5)) for i in range(19)])
# 2. red: a circle
click("color1")
stroke([(112 + 45 * math.cos(t / 16 * 2 * math.pi), 150 + 40 * math.sin(t / 16 * 2 * math.pi)) for t in range(17)])
# 3. a bigger brush (drag the slider knob), blue zigzag
click(LAYOUT.slider_point(2))
stroke([LAYOUT.slider_point(2), LAYOUT.slider_point(5), LAYOUT.slider_point(7)])
click("color3")
stroke([(40 + 10 * i, 190 - 25 * (i % 2)) for i in range(15)])
# 4. the eraser across the wave and the circle
click("eraser")
stroke([(60 + 9 * i, 60 + 7 * i) for i in range(14)])
# 5. back to the pen in yellow: a few dots, then a pause
click("pen")
click("color4")
for p in [(60, 120), (80, 125), (100, 118), (120, 128)]:
    click(p)
move([samples[-1][:2]] * 5, 0)

out = Path(__file__).with_name("demo_actions.json")
out.write_text(json.dumps({"actions": samples}) + "\n")
print(f"{len(samples)} samples written to {out}")
