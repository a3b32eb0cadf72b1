"""The ActionStream: raw pointer samples -> model steps, shared by data generation, the viewer and
evaluation (how the network encodes a step: `infinipaint.models.encoding`).

    from infinipaint.actions import ActionStream
    stream = ActionStream()
    steps = stream.push(100, 120, 1)           # the viewer: one pointer sample every 80 ms
    steps = ActionStream.process(samples)      # data generation / evaluation: a whole list

ActionStream semantics. The stream remembers the last *emitted* step `(lx, ly, ld)`; `dist` is the
Euclidean distance from it to the new sample.
- The very first sample (after construction or `reset()`) is always emitted as is.
- Drag (down before and now) and hover (up before and now): ignored if `dist <= DEAD_ZONE` (4 px);
  otherwise the segment is split into `n >= ceil(dist / MAX_STEP)` equal sub-steps with integer
  rounding `lx + (2 * dx * i + n) // (2 * n)` (deterministic, the last one exactly at the sample);
  `n` is the smallest count for which no rounded sub-step is longer than MAX_STEP (12 px).
  Every drag and hover step is therefore longer than 4 px and at most 12 px.
- Press (up -> down): always emitted, never lost to the dead zone: one step `(x, y, 1)` at the
  sample. (A press may land far from the last step: only its position matters to Minipaint.)
- Release (down -> up): if the pointer moved more than 4 px, drag sub-steps to the sample with
  `down=1` first; then ONE idle step at the same position with `down=0` marking the end of the
  stroke. Idle steps (cursor still, button up) appear nowhere else.
- Pauses (repeated identical samples) produce nothing, so the viewer's 80 ms sampling and the
  procedural agents yield the same step statistics.

`RESET_ACTION` is the action standing for Minipaint's reset state (cursor at the centre, button
up): the `a_prev` of the first step of every episode.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

from infinipaint.minipaint import MinipaintState, validate_action

Step = tuple[int, int, int]

DEAD_ZONE = 4  # px: moves of this length or less are ignored
MAX_STEP = 12  # px: no drag or hover step is longer
RESET_ACTION: Step = (*MinipaintState().cursor, int(MinipaintState().down))


def substeps(x0: int, y0: int, x1: int, y1: int) -> list[tuple[int, int]]:
    """Integer points splitting (x0, y0) -> (x1, y1) into equal steps of at most MAX_STEP px.

    The first point is excluded, the last is exactly (x1, y1)."""
    dx, dy = x1 - x0, y1 - y0
    n = max(1, math.ceil(math.hypot(dx, dy) / MAX_STEP))
    while True:
        pts = [(x0 + (2 * dx * i + n) // (2 * n), y0 + (2 * dy * i + n) // (2 * n)) for i in range(1, n + 1)]
        prev, ok = (x0, y0), True
        for p in pts:
            if math.hypot(p[0] - prev[0], p[1] - prev[1]) > MAX_STEP:
                ok = False
                break
            prev = p
        if ok:
            return pts
        n += 1


class ActionStream:
    """Raw pointer samples -> model steps (see the module docstring for the exact rules)."""

    def __init__(self) -> None:
        self.last: Step | None = None  # the last emitted step

    def reset(self) -> None:
        self.last = None

    def push(self, x: int, y: int, down: int) -> list[Step]:
        """The steps produced by one more raw sample (possibly none)."""
        x, y, down = validate_action((x, y, down))
        if self.last is None:
            out = [(x, y, down)]
        else:
            lx, ly, ld = self.last
            moved = math.hypot(x - lx, y - ly) > DEAD_ZONE
            if ld == down:  # drag or hover
                out = [(px, py, down) for px, py in substeps(lx, ly, x, y)] if moved else []
            elif down:  # press
                out = [(x, y, 1)]
            else:  # release: finish the stroke, then one idle step
                out = [(px, py, 1) for px, py in substeps(lx, ly, x, y)] if moved else []
                ex, ey = (x, y) if moved else (lx, ly)
                out.append((ex, ey, 0))
        if out:
            self.last = out[-1]
        return out

    @classmethod
    def process(cls, events: Iterable[Sequence[int]]) -> list[Step]:
        """All steps for a whole list of raw `(x, y, down)` samples, through a fresh stream."""
        stream = cls()
        steps: list[Step] = []
        for e in events:
            x, y, down = validate_action(e)
            steps.extend(stream.push(x, y, down))
        return steps
