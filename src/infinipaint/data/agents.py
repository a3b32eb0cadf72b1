"""Procedural agents: a scripted person driving Minipaint, recorded as one episode.

    from infinipaint.data.agents import EpisodeConfig, record_episode
    ep = record_episode(seed=0, index=7)           # all randomness from (seed, index)
    ep = record_episode(0, 7, layout="column")     # the same person on another Minipaint layout
    ep.frames    # (T+1, 224, 224, 3) uint8: frames[0] = reset frame, frames[t] = after actions[t]
    ep.actions   # (T+1, 3) int16: actions[0] = RESET_ACTION, actions[t] = the step giving frames[t]
    ep.kinds     # (T+1,) uint8 index into KINDS (what the step did to Minipaint)
    ep.activities  # (T+1,) uint8 index into ACTIVITIES (what the agent was doing)

Alignment: `frames` and `actions` have the same length, and index t pairs a frame with the step
that produced it; so a window `frames[t:t+K+1]`, `actions[t:t+K+1]` holds K transitions
`(frames[j], actions[j], actions[j+1]) -> frames[j+1]`, `actions[j]` being `a_prev`.

The agent emits RAW pointer samples, as a person's mouse sampled every 80 ms would (moves of a few
to ~30 px per sample, pauses as repeated identical samples); they pass through the same
`ActionStream` the viewer uses, so the recorded steps have the viewer's statistics. Each episode
draws a style (sparse, normal, crowded, eraser-heavy) so episodes span empty to crowded canvases.
Every position, colour and brush size comes from the app's layout, so agents work on any layout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from infinipaint.actions import RESET_ACTION, ActionStream
from infinipaint.minipaint import CONTROLS, SCREEN, Layout, Minipaint

GENERATOR_VERSION = 1

# What a step did to Minipaint; the controls have the same names in every layout.
KINDS = (
    "reset", "draw", "erase", *(f"press_{c}" for c in CONTROLS),
    "slider_drag", "hover", "idle", "dead_click", "nop_drag",
)
PRIMITIVES = ("polyline", "arc", "circle", "zigzag", "spiral", "scribble", "dot", "long_stroke")
UI_WORK = ("tool_switch", "color_pick", "slider_press", "slider_drag", "dead_click", "button_drag")
ACTIVITIES = ("reset", *PRIMITIVES, *UI_WORK, "hover", "move", "pause", "edge_work",
              "control_drag")  # append only: stored as indices
STYLES = ("sparse", "normal", "crowded", "eraser")

_KIND = {k: i for i, k in enumerate(KINDS)}
_ACT = {a: i for i, a in enumerate(ACTIVITIES)}

Sample = tuple[int, int, int, str]  # x, y, down, activity


@dataclass(frozen=True)
class EpisodeConfig:
    """How episodes are generated; stored with the data so any episode can be regenerated."""

    min_steps: int = 500  # steps per episode (after ActionStream), inclusive
    max_steps: int = 1000
    # Weight of "edge work" among the UI activities (colour picks weigh 0.4): clicks within 4 px of a
    # control's edge, mostly just outside it, and slider drags that leave the slider. Where a
    # control ends is learned from these; the other activities click well inside or anywhere. 0
    # (the default) records exactly the episodes of earlier versions.
    edge_work: float = 0.0
    # Weight of drags that begin on a control and end anywhere (on the canvas, near the control, on
    # other controls), with the button held on the way: what such a drag does depends on where it
    # began, which the screen no longer shows once the pointer has left the control. 0 (the default)
    # records exactly the episodes of earlier versions.
    drag_work: float = 0.0

    def __post_init__(self) -> None:
        if not 1 <= self.min_steps <= self.max_steps:
            raise ValueError(f"need 1 <= min_steps <= max_steps, got {self.min_steps}, {self.max_steps}")
        if not 0 <= self.edge_work <= 10:
            raise ValueError(f"edge_work must be in [0, 10], got {self.edge_work}")
        if not 0 <= self.drag_work <= 10:
            raise ValueError(f"drag_work must be in [0, 10], got {self.drag_work}")


@dataclass
class Episode:
    frames: np.ndarray  # (T+1, 224, 224, 3) uint8
    actions: np.ndarray  # (T+1, 3) int16
    kinds: np.ndarray  # (T+1,) uint8
    activities: np.ndarray  # (T+1,) uint8
    density: np.ndarray  # (T+1,) float32: share of canvas pixels that are not white
    style: str
    raw_samples: int  # pointer samples the agent produced (those that made steps, and pauses)
    pause_samples: int  # repeated identical samples (dropped by the dead zone)


def episode_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index), GENERATOR_VERSION]))


def step_kind(app: Minipaint, x: int, y: int, down: int) -> str:
    """What a step does to Minipaint, from its state before the step."""
    s, layout = app.state, app.layout
    if down and not s.down:
        if layout.contains("canvas", x, y):
            return "draw" if s.tool == "pen" else "erase"
        control = layout.control_at(x, y)
        return f"press_{control}" if control else "dead_click"
    if down:
        if s.drag == "canvas":
            return "draw" if s.tool == "pen" else "erase"
        return "slider_drag" if s.drag == "slider" else "nop_drag"
    return "idle" if s.down else "hover"


def _clip(v: float, lo: int, hi: int) -> int:
    return int(min(max(round(v), lo), hi))


def toward_canvas(layout: Layout) -> tuple[int, int]:
    """The unit step (dx, dy) from the toolbar toward the canvas, along the axis they are apart."""
    (tx, ty), (cx, cy) = layout.center("toolbar"), layout.center("canvas")
    if abs(cx - tx) > abs(cy - ty):
        return (1 if cx > tx else -1), 0
    return 0, (1 if cy > ty else -1)


class Agent:
    """Turns intentions (a spiral here, a colour pick there) into raw pointer samples."""

    def __init__(self, rng: np.random.Generator, app: Minipaint, edge_work: float = 0.0,
                 drag_work: float = 0.0) -> None:
        self.rng = rng
        self.app = app
        self.layout = app.layout  # every position, colour and brush size the agent uses
        self.canvas = app.layout.rect("canvas")  # (x, y, w, h), where strokes go
        self.edge_work = edge_work
        self.drag_work = drag_work
        self.style = str(rng.choice(STYLES, p=[0.2, 0.35, 0.25, 0.2]))
        self.speed = float(rng.uniform(5, 22))  # px per 80 ms sample while drawing
        self.scale = {"sparse": 0.6, "normal": 1.0, "crowded": 1.5, "eraser": 1.2}[self.style]
        self.pos = (int(rng.integers(0, SCREEN)), int(rng.integers(0, SCREEN)))
        self.ink: list[tuple[int, int]] = []  # where the pen has been, for the eraser to aim at
        self.pauses = 0

    # ------------------------------------------------------------------ choosing what to do next
    def act(self) -> list[Sample]:
        r, s = self.rng, self.app.state
        erasing = s.tool == "eraser"
        w = {p: 1.0 for p in PRIMITIVES}
        w.update(circle=0.7, spiral=0.6, long_stroke=0.5, dot=0.7)
        draw = {"sparse": 1.0, "normal": 2.5, "crowded": 4.0, "eraser": 2.5}[self.style]
        if self.style == "crowded":
            w["long_stroke"] = 1.2
        if erasing:  # eraser phase: sweep over ink
            w.update(scribble=2.0, zigzag=2.0, long_stroke=1.0, spiral=0.3, dot=0.3)
        total = sum(w.values())
        weights = {p: draw * v / total for p, v in w.items()}
        stay = self.style == "eraser"
        weights.update(
            tool_switch=(0.15 if stay else 0.5) if erasing else (0.35 if self.style == "eraser" else 0.2),
            color_pick=0.4, slider_press=0.12, slider_drag=0.1, dead_click=0.05, button_drag=0.03,
            hover=0.15, pause=0.1,
        )
        if self.edge_work > 0:
            weights["edge_work"] = self.edge_work
        if self.drag_work > 0:
            weights["control_drag"] = self.drag_work
        names = list(weights)
        p = np.array([weights[n] for n in names])
        name = names[int(r.choice(len(names), p=p / p.sum()))]
        return getattr(self, f"_{name}")()

    # ------------------------------------------------------------------------ pointer motion
    def _walk(self, path: np.ndarray, down: int, activity: str, speed: float) -> list[Sample]:
        """Sample a dense (N, 2) path every `speed` px of arc length (jittered), ending at its end."""
        seg = np.hypot(*np.diff(path, axis=0).T)
        arc = np.concatenate([[0.0], np.cumsum(seg)])
        out: list[Sample] = []
        t = 0.0
        while True:
            t += speed * self.rng.uniform(0.6, 1.4)
            if t >= arc[-1]:
                break
            x = np.interp(t, arc, path[:, 0])
            y = np.interp(t, arc, path[:, 1])
            out.append((_clip(x, 0, SCREEN - 1), _clip(y, 0, SCREEN - 1), down, activity))
            if self.rng.random() < 0.03:  # a short pause: identical samples
                out.extend(self._hold(down, activity, out[-1][:2], int(self.rng.integers(1, 4))))
        end = (_clip(path[-1, 0], 0, SCREEN - 1), _clip(path[-1, 1], 0, SCREEN - 1))
        out.append((*end, down, activity))
        self.pos = end
        return out

    def _hold(self, down: int, activity: str, at: tuple[int, int], n: int) -> list[Sample]:
        self.pauses += n
        return [(at[0], at[1], down, activity)] * n

    def _move(self, target: tuple[int, int], activity: str = "move") -> list[Sample]:
        """Hover to a target along a gently curved path, fast, slowing down near the end."""
        p0, p1 = np.array(self.pos, float), np.array(target, float)
        d = np.linalg.norm(p1 - p0)
        if d < 1:
            return []
        normal = np.array([-(p1 - p0)[1], (p1 - p0)[0]]) / d
        ctrl = (p0 + p1) / 2 + normal * self.rng.normal(0, 0.15) * d
        t = np.linspace(0, 1, max(2, int(d)))[:, None]
        path = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * ctrl + t**2 * p1
        speed = self.rng.uniform(10, 32) if d > 40 else self.rng.uniform(4, 14)
        return self._walk(path, 0, activity, speed)

    def _stroke(self, path: np.ndarray, activity: str, speed: float | None = None, closed: bool = False) -> list[Sample]:
        """Move to the nearer end of the path (any point of a closed one), press, drag, release."""
        path = np.asarray(path, float)
        near = np.hypot(path[:, 0] - self.pos[0], path[:, 1] - self.pos[1])
        if closed:
            path = np.roll(path, -int(np.argmin(near)), axis=0)
        elif near[-1] < near[0]:
            path = path[::-1].copy()
        cx, cy, cw, ch = self.canvas
        path[:, 0] = np.clip(path[:, 0], cx, cx + cw - 1)
        path[:, 1] = np.clip(path[:, 1], cy, cy + ch - 1)
        start = (int(round(path[0, 0])), int(round(path[0, 1])))
        out = self._move(start)
        out.append((*start, 1, activity))
        self.pos = start
        if len(path) > 1:
            out += self._walk(path, 1, activity, speed or self.speed)
        if self.rng.random() < 0.2:
            out += self._hold(1, activity, self.pos, int(self.rng.integers(1, 4)))
        out.append((*self.pos, 0, activity))  # release
        if self.app.state.tool == "pen":
            self.ink.extend((int(x), int(y)) for x, y in path[:: max(1, len(path) // 8)])
            self.ink = self.ink[-200:]
        return out

    def _click(self, target: tuple[int, int], activity: str) -> list[Sample]:
        out = self._move(target)
        out.append((*target, 1, activity))
        if self.rng.random() < 0.3:
            out += self._hold(1, activity, target, int(self.rng.integers(1, 4)))
        jx, jy = self.rng.integers(-2, 3, size=2)
        end = (_clip(target[0] + jx, 0, SCREEN - 1), _clip(target[1] + jy, 0, SCREEN - 1))
        out.append((*end, 0, activity))
        self.pos = end
        return out

    def _point_in(self, name: str, margin: int = 1) -> tuple[int, int]:
        x, y, w, h = self.layout.rect(name)
        return (int(self.rng.integers(x + margin, x + w - margin)), int(self.rng.integers(y + margin, y + h - margin)))

    # ---------------------------------------------------------------------- where to draw
    def _anchor(self, extent: float) -> np.ndarray:
        """A centre for a shape of radius `extent`: on ink while erasing, often near the pointer
        otherwise (people draw where they are), anywhere the rest of the time."""
        r = self.rng
        cx, cy, cw, ch = self.canvas
        m = min(extent, cw / 2 - 1, ch / 2 - 1) * 0.5
        lo, hi = np.array([cx + m, cy + m]), np.array([cx + cw - m, cy + ch - m])
        if self.app.state.tool == "eraser" and self.ink and r.random() < 0.85:
            return np.array(self.ink[int(r.integers(len(self.ink)))], float) + r.normal(0, 6, 2)
        if r.random() < 0.75:
            return np.clip(np.array(self.pos, float) + r.normal(0, 20, 2), lo, hi)
        return r.uniform(lo, hi)

    def _radius(self, lo: float, hi: float) -> float:
        return float(self.rng.uniform(lo, hi) * self.scale)

    # ----------------------------------------------------------------------- drawing primitives
    def _polyline(self) -> list[Sample]:
        r = self._radius(10, 45)
        c = self._anchor(r)
        pts = c + self.rng.uniform(-r, r, size=(int(self.rng.integers(2, 7)), 2))
        return self._stroke(_densify(pts), "polyline")

    def _arc_path(self, radius: float, sweep: float) -> np.ndarray:
        c = self._anchor(radius)
        a0 = self.rng.uniform(0, 2 * math.pi)
        sign = self.rng.choice([-1.0, 1.0])
        t = a0 + sign * np.linspace(0, sweep, max(8, int(radius * sweep)))
        squash = self.rng.uniform(0.6, 1.0)
        return np.stack([c[0] + radius * np.cos(t), c[1] + radius * squash * np.sin(t)], axis=1)

    def _arc(self) -> list[Sample]:
        return self._stroke(self._arc_path(self._radius(8, 50), self.rng.uniform(1.0, 4.7)), "arc")

    def _circle(self) -> list[Sample]:
        return self._stroke(self._arc_path(self._radius(5, 45), 2 * math.pi + self.rng.uniform(0, 0.4)), "circle", closed=True)

    def _zigzag(self) -> list[Sample]:
        r = self.rng
        n = int(r.integers(3, 11))
        width = r.uniform(5, 20) * self.scale
        amp = r.uniform(4, 25) * self.scale
        c = self._anchor(n * width / 2)
        ang = r.uniform(0, 2 * math.pi)
        u, v = np.array([math.cos(ang), math.sin(ang)]), np.array([-math.sin(ang), math.cos(ang)])
        k = np.arange(n + 1)
        pts = c + np.outer((k - n / 2) * width, u) + np.outer(np.where(k % 2 == 0, -amp, amp), v)
        return self._stroke(_densify(pts), "zigzag")

    def _spiral(self) -> list[Sample]:
        r = self.rng
        r1 = self._radius(10, 45)
        turns = r.uniform(1.5, 4.0)
        c = self._anchor(r1)
        t = np.linspace(0, 1, max(16, int(r1 * turns * 4)))
        ang = r.uniform(0, 2 * math.pi) + r.choice([-1.0, 1.0]) * 2 * math.pi * turns * t
        rad = r.uniform(0, 3) + (r1 - 2) * t
        path = np.stack([c[0] + rad * np.cos(ang), c[1] + rad * np.sin(ang)], axis=1)
        return self._stroke(path, "spiral")

    def _scribble(self) -> list[Sample]:
        r = self.rng
        extent = self._radius(10, 40)
        c = self._anchor(extent)
        n = int(r.integers(20, 80))
        heading, p, pts = r.uniform(0, 2 * math.pi), c.copy(), [c.copy()]
        for _ in range(n):
            heading += r.normal(0, 0.9)
            p = p + r.uniform(3, 9) * np.array([math.cos(heading), math.sin(heading)])
            p += (c - p) * 0.15 * (np.linalg.norm(c - p) > extent)  # stay near the centre
            pts.append(p.copy())
        return self._stroke(_densify(np.array(pts)), "scribble")

    def _dot(self) -> list[Sample]:
        out: list[Sample] = []
        c = self._anchor(20)
        for _ in range(int(self.rng.integers(1, 6))):
            p = c + self.rng.normal(0, 12 * self.scale, 2)
            out += self._stroke(p[None, :], "dot")
        return out

    def _long_stroke(self) -> list[Sample]:
        r = self.rng
        cx, cy, cw, ch = self.canvas
        x0, x1 = cx + r.uniform(0, 20), cx + cw - 1 - r.uniform(0, 20)
        y0, y1 = cy + r.uniform(0, 20), cy + ch - 1 - r.uniform(0, 20)
        kind = r.integers(3)
        if kind == 0:  # left <-> right
            a, b = [x0, r.uniform(y0, y1)], [x1, r.uniform(y0, y1)]
        elif kind == 1:  # top <-> bottom
            a, b = [r.uniform(x0, x1), y0], [r.uniform(x0, x1), y1]
        else:  # corner to corner
            a, b = [x0, y0], [x1, y1]
            if r.random() < 0.5:
                a[1], b[1] = y1, y0
        if r.random() < 0.5:
            a, b = b, a
        a, b = np.array(a), np.array(b)
        bend = np.array([-(b - a)[1], (b - a)[0]]) * r.normal(0, 0.12)
        t = np.linspace(0, 1, 64)[:, None]
        path = (1 - t) ** 2 * a + 2 * (1 - t) * t * ((a + b) / 2 + bend) + t**2 * b
        return self._stroke(path, "long_stroke", speed=self.rng.uniform(8, 28))

    # ---------------------------------------------------------------------------- UI work
    def _tool_switch(self) -> list[Sample]:
        other = "eraser" if self.app.state.tool == "pen" else "pen"
        out = self._click(self._point_in(other), "tool_switch")
        if other == "eraser" and self.rng.random() < 0.6:  # big erasers clear fast
            out += self._slider_press(min_size=5)
        return out

    def _color_pick(self) -> list[Sample]:
        i = int(self.rng.integers(len(self.layout.colors)))
        return self._click(self._point_in(f"color{i}"), "color_pick")

    def _size(self, min_size: int = 1) -> int:
        sizes = [s for s in self.layout.sizes if s >= min_size]
        bias = {"sparse": -0.5, "normal": 0.0, "crowded": 1.5, "eraser": 0.8}[self.style]
        w = np.exp(bias * np.linspace(-1, 1, len(sizes)))
        return int(sizes[int(self.rng.choice(len(sizes), p=w / w.sum()))])

    def _slider_press(self, min_size: int = 1) -> list[Sample]:
        if self.rng.random() < 0.15:  # anywhere on the slider, ends included
            return self._click(self._point_in("slider", 0), "slider_press")
        L = self.layout
        along, across = L.track_coords(*L.slider_point(self._size(min_size)))
        along += int(self.rng.integers(-1, 2))  # a pixel off along the track, up to 6 across it
        return self._click(L.track_coords(along, across + int(self.rng.integers(-6, 7))), "slider_press")

    def _slider_drag(self, off_rect: bool = False) -> list[Sample]:
        """Press on the slider and drag along it; targets are in track coordinates (along, across)."""
        r, L = self.rng, self.layout
        activity = "edge_work" if off_rect else "slider_drag"
        start = self._point_in("slider", 0)
        out = self._move(start)
        out.append((*start, 1, activity))
        self.pos = start
        a0, c0, length, thickness = L.slider_span()
        for _ in range(int(r.integers(1, 3))):
            if r.random() < 0.3:
                along = int(r.integers(a0 - 6, a0 + length + 6))
            else:
                along = L.track_coords(*L.slider_point(self._size()))[0]
            if off_rect:  # out of the slider's rectangle, on either side of the track
                d = c0 + thickness - 1 + r.integers(1, 9) if r.random() < 0.7 else c0 - r.integers(1, 5)
                across = _clip(d, 0, SCREEN - 1)
            else:
                across = _clip(L.track_coords(*self.pos)[1] + r.integers(-3, 4), 0, SCREEN - 1)
            path = np.linspace(self.pos, L.track_coords(along, across), 16)
            out += self._walk(path, 1, activity, r.uniform(3, 12))
        out.append((*self.pos, 0, activity))
        return out

    def _dead_click(self) -> list[Sample]:
        x0, y0, w, h = self.layout.rect("toolbar")
        while True:
            p = (int(self.rng.integers(x0, x0 + w)), int(self.rng.integers(y0, y0 + h)))
            if self.layout.control_at(*p) is None:
                return self._click(p, "dead_click")

    def _edge_work(self) -> list[Sample]:
        """A click 1-4 px outside (sometimes 0-1 px inside) an edge of a control, or a slider drag
        that wanders up to 8 px above or below the slider."""
        r = self.rng
        if r.random() < 0.3:
            return self._slider_drag(off_rect=True)
        x, y, w, h = self.layout.rect(str(r.choice(self.layout.controls)))
        d = int(r.integers(1, 5)) if r.random() < 0.8 else -int(r.integers(0, 2))  # outward distance
        side = int(r.integers(4))
        along = r.integers(-2, (w if side < 2 else h) + 2)
        p = [(x + along, y - d), (x + along, y + h - 1 + d), (x - d, y + along), (x + w - 1 + d, y + along)][side]
        tx, ty, tw, th = self.layout.rect("toolbar")
        return self._click((_clip(p[0], tx, tx + tw - 1), _clip(p[1], ty, ty + th - 1)), "edge_work")

    def _button_drag(self) -> list[Sample]:
        """Press on a button and drag up to 50 px toward the canvas (and up to 40 px sideways)."""
        name = str(self.rng.choice(self.layout.controls[:-1]))
        start = self._point_in(name)
        out = self._move(start)
        out.append((*start, 1, "button_drag"))
        self.pos = start
        side, inward = self.rng.uniform(-40, 40), self.rng.uniform(0, 50)
        dx, dy = toward_canvas(self.layout)
        end = (start[0] + side * abs(dy) + inward * dx, start[1] + side * abs(dx) + inward * dy)
        out += self._walk(np.linspace(start, end, 16), 1, "button_drag", self.rng.uniform(5, 15))
        out.append((*self.pos, 0, "button_drag"))
        return out

    def _control_drag(self) -> list[Sample]:
        """Press anywhere on a control (the slider included) and drag, button held, to a point on the
        canvas (anywhere, half of the time), near the control, or elsewhere in the toolbar; now and
        then held still on the way."""
        r = self.rng
        start = self._point_in(str(r.choice(self.layout.controls)))
        out = self._move(start)
        out.append((*start, 1, "control_drag"))
        self.pos = start
        u = r.random()
        if u < 0.5:
            end = self._point_in("canvas", margin=2)
        elif u < 0.8:
            end = (_clip(start[0] + r.uniform(-60, 60), 0, SCREEN - 1), _clip(start[1] + r.uniform(-60, 60), 0, SCREEN - 1))
        else:
            end = self._point_in("toolbar")
        steps = max(2, int(np.hypot(end[0] - start[0], end[1] - start[1]) // 4))
        out += self._walk(np.linspace(start, end, steps), 1, "control_drag", r.uniform(4, 18))
        if r.random() < 0.3:
            out += self._hold(1, "control_drag", self.pos, int(r.integers(1, 4)))
        out.append((*self.pos, 0, "control_drag"))
        return out

    def _hover(self) -> list[Sample]:
        out: list[Sample] = []
        for _ in range(int(self.rng.integers(1, 4))):
            out += self._move((int(self.rng.integers(0, SCREEN)), int(self.rng.integers(0, SCREEN))), "hover")
        return out

    def _pause(self) -> list[Sample]:
        return self._hold(0, "pause", self.pos, int(self.rng.integers(2, 12)))


def _densify(pts: np.ndarray) -> np.ndarray:
    """A polyline through `pts` with a point about every pixel (so walking keeps the corners)."""
    out = [pts[:1]]
    for a, b in zip(pts[:-1], pts[1:]):
        n = max(1, int(np.linalg.norm(b - a)))
        out.append(a + (b - a) * np.linspace(0, 1, n + 1)[1:, None])
    return np.concatenate(out)


def record_episode(seed: int, index: int, config: EpisodeConfig = EpisodeConfig(),
                   layout: str | Layout = "default") -> Episode:
    """Play one episode on a layout (a name in LAYOUTS, or a Layout): a pure function of
    (seed, index, config, GENERATOR_VERSION, layout)."""
    rng = episode_rng(seed, index)
    n_steps = int(rng.integers(config.min_steps, config.max_steps + 1))
    app = Minipaint(layout)
    agent = Agent(rng, app, config.edge_work, config.drag_work)
    stream = ActionStream()
    frame = app.reset()
    cx, cy, cw, ch = app.layout.rect("canvas")
    frames = np.empty((n_steps + 1, SCREEN, SCREEN, 3), dtype=np.uint8)
    actions = np.empty((n_steps + 1, 3), dtype=np.int16)
    kinds = np.empty(n_steps + 1, dtype=np.uint8)
    acts = np.empty(n_steps + 1, dtype=np.uint8)
    density = np.empty(n_steps + 1, dtype=np.float32)
    frames[0], actions[0], kinds[0], acts[0], density[0] = frame, RESET_ACTION, _KIND["reset"], _ACT["reset"], 0.0
    t, raw = 0, 0
    # The very first sample: the pointer where the person left it.
    pending: list[Sample] = [(*agent.pos, 0, "hover")]
    i = 0
    while t < n_steps:
        if i == len(pending):
            pending, i = agent.act(), 0
            continue
        x, y, down, activity = pending[i]
        i += 1
        raw += 1
        for sx, sy, sd in stream.push(x, y, down):
            if t >= n_steps:
                break
            kind = step_kind(app, sx, sy, sd)
            frame = app.step((sx, sy, sd))
            t += 1
            frames[t], actions[t] = frame, (sx, sy, sd)
            kinds[t], acts[t] = _KIND[kind], _ACT[activity]
            if kind in ("draw", "erase"):
                c = frame[cy : cy + ch, cx : cx + cw]
                density[t] = np.count_nonzero((c[..., 0] & c[..., 1] & c[..., 2]) != 255) / (cw * ch)
            else:
                density[t] = density[t - 1]
    return Episode(frames, actions, kinds, acts, density, agent.style, raw, agent.pauses)
