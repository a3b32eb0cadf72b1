"""Minipaint: the deterministic 224x224 paint program the world model learns.

    from infinipaint.minipaint import Minipaint
    app = Minipaint()
    frame = app.reset()                  # (224, 224, 3) uint8
    frame = app.step((100, 120, 1))      # press on the canvas: a dot
    frame = app.step((110, 120, 1))      # drag: a round-capped segment
    app.state                            # tool, colour, size, previous button and cursor
    Minipaint(layout="column")           # another layout by name (see layout.LAYOUTS)

A pure function of (state, action): no clock, no randomness, no anti-aliasing, no cursor drawn.
Rendering uses plain pygame Surfaces, so no display (and no SDL video driver) is needed.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame  # noqa: E402

from .layout import LAYOUT, SCREEN, WHITE, Layout, get_layout  # noqa: E402

TOOLS = ("pen", "eraser")
TOOLBAR_BG = (200, 200, 204)
BUTTON_BG = (245, 245, 245)
BUTTON_SELECTED_BG = (40, 40, 40)
INK = (20, 20, 20)
TRACK = (90, 90, 90)
KNOB = (20, 20, 20)

Action = tuple[int, int, int]


@dataclass(frozen=True)
class MinipaintState:
    """Everything but the canvas pixels. All of it is on screen except `down`/`cursor`/`drag`."""

    tool: str = "pen"  # "pen" or "eraser"
    color: int = 0  # index into the layout's colours
    size: int = 3  # brush radius, one of the layout's sizes
    down: bool = False  # button state of the previous step
    cursor: tuple[int, int] = (SCREEN // 2, SCREEN // 2)  # cursor of the previous step
    drag: str | None = None  # where the current press began: "canvas", "slider", "button", "none"


@dataclass(frozen=True)
class Snapshot:
    state: MinipaintState
    screen: pygame.Surface


def validate_action(action: Any, clip: bool = False) -> Action:
    """Check an `(x, y, down)` action; raise ValueError (or clip, if asked) when it is bad."""
    if isinstance(action, (str, bytes)) or not hasattr(action, "__len__"):
        raise ValueError(f"action must be a sequence (x, y, down), got {type(action).__name__}")
    if len(action) != 3:
        raise ValueError(f"action must have 3 entries (x, y, down), got {len(action)}")
    out = []
    for name, v in zip(("x", "y", "down"), action):
        if isinstance(v, (bool, np.bool_)):
            v = int(v)
        if isinstance(v, (int, np.integer)):
            out.append(int(v))
            continue
        if isinstance(v, (float, np.floating)):
            if not math.isfinite(v):
                raise ValueError(f"action {name} is not finite: {v}")
            if clip:
                out.append(int(round(v)))
                continue
            if float(v).is_integer():
                out.append(int(v))
                continue
        raise ValueError(f"action {name} must be an integer, got {v!r} ({type(v).__name__})")
    x, y, down = out
    if clip:
        return min(max(x, 0), SCREEN - 1), min(max(y, 0), SCREEN - 1), int(down > 0)
    if not (0 <= x < SCREEN and 0 <= y < SCREEN):
        raise ValueError(f"action position ({x}, {y}) outside the {SCREEN}x{SCREEN} screen")
    if down not in (0, 1):
        raise ValueError(f"action down must be 0 or 1, got {down}")
    return x, y, down


def brush_sizes_table(sizes: Sequence[int] = LAYOUT.sizes) -> np.ndarray:
    """For every pixel offset `(dy, dx)` from a stamp centre, the smallest brush size whose disc
    (as `_stroke` draws it) covers that pixel: an int array `(2 R + 1, 2 R + 1)`, `R = max(sizes)`,
    indexed `[dy + R, dx + R]`; `max(sizes) + 1` where no size reaches. Discs grow with the size, so
    a pixel is painted by brush `s` exactly when the table reads `<= s`."""
    reach = max(sizes)
    side = 2 * reach + 3  # a pixel of margin: pygame's discs are not centred on the pixel
    table = np.full((side, side), reach + 1, dtype=np.int64)
    larger = np.ones((side, side), dtype=bool)
    for size in sorted(sizes, reverse=True):
        surface = pygame.Surface((side, side))
        surface.fill((0, 0, 0))
        pygame.draw.circle(surface, (255, 255, 255), (side // 2, side // 2), size)
        disc = pygame.surfarray.array3d(surface)[:, :, 0].T > 0  # (y, x)
        if (disc & ~larger).any():
            raise RuntimeError(f"pygame's disc of radius {size} is not inside the larger ones")
        table[disc], larger = size, disc
    if table[0].min() <= reach or table[:, 0].min() <= reach:
        raise RuntimeError("a disc reached the table's margin")
    return table[1:-1, 1:-1]


class Minipaint:
    """The paint program on one layout (a name in LAYOUTS, or a Layout). `step` returns a fresh
    uint8 copy of the screen every time."""

    def __init__(self, layout: str | Layout = "default") -> None:
        self.layout = get_layout(layout)
        self._screen = pygame.Surface((SCREEN, SCREEN))
        self._canvas_rect = pygame.Rect(self.layout.rect("canvas"))
        self._frame: np.ndarray | None = None
        self.state = MinipaintState()
        self.reset()

    # ----------------------------------------------------------------------------- public API
    def reset(self, state: MinipaintState | None = None) -> np.ndarray:
        """Blank canvas and default tool/colour/size (or the given state's); returns the frame."""
        state = state or MinipaintState(size=self.layout.initial_size)
        L = self.layout
        if state.tool not in TOOLS or not 0 <= state.color < len(L.colors) or state.size not in L.sizes:
            raise ValueError(f"state {state} is not one of layout {L.name!r}")
        self.state = state
        self._screen.set_clip(None)
        self._screen.fill(WHITE)
        self._draw_toolbar()
        return self._capture()

    def step(self, action: Sequence[int], clip: bool = False) -> np.ndarray:
        """Apply one `(x, y, down)` action and return the new frame (a copy)."""
        x, y, down = validate_action(action, clip=clip)
        s = self.state
        changed = False
        if down and not s.down:  # press
            control = self.layout.control_at(x, y)
            if self.layout.contains("canvas", x, y):
                drag = "canvas"
                self._stroke((x, y), (x, y))
                changed = True
            elif control == "slider":
                drag = "slider"
                changed = self._set(size=self.layout.size_at(x, y))
            elif control is not None:
                drag = "button"
                if control in TOOLS:
                    changed = self._set(tool=control)
                else:
                    changed = self._set(color=int(control[5:]))
            else:
                drag = "none"  # dead space in the toolbar
            self.state = replace(self.state, drag=drag)
        elif down and s.down:  # drag
            if s.drag == "canvas":
                self._stroke(s.cursor, (x, y))
                changed = True
            elif s.drag == "slider":
                changed = self._set(size=self.layout.size_at(x, y))
        else:  # hover or release
            self.state = replace(self.state, drag=None)
        self.state = replace(self.state, down=bool(down), cursor=(x, y))
        if changed:
            return self._capture()
        return self._frame.copy()

    def frame(self) -> np.ndarray:
        """The current screen (a copy)."""
        return self._frame.copy()

    def snapshot(self) -> Snapshot:
        return Snapshot(self.state, self._screen.copy())

    def restore(self, snap: Snapshot) -> np.ndarray:
        self.state = snap.state
        self._screen = snap.screen.copy()
        return self._capture()

    # ------------------------------------------------------------------------------ rendering
    def _set(self, **changes: Any) -> bool:
        new = replace(self.state, **changes)
        if (new.tool, new.color, new.size) == (self.state.tool, self.state.color, self.state.size):
            return False
        self.state = new
        self._draw_toolbar()
        return True

    def _stroke(self, p0: tuple[int, int], p1: tuple[int, int]) -> None:
        """A round-capped segment: discs of the brush radius at every pixel step from p0 to p1."""
        s = self.state
        color = WHITE if s.tool == "eraser" else self.layout.colors[s.color]
        (x0, y0), (x1, y1) = p0, p1
        n = max(abs(x1 - x0), abs(y1 - y0))
        screen = self._screen
        screen.set_clip(self._canvas_rect)
        if n == 0:
            pygame.draw.circle(screen, color, (x0, y0), s.size)
        else:
            for i in range(n + 1):
                # Integer rounding (half away from zero) keeps every run bit-identical.
                px = x0 + (2 * (x1 - x0) * i + n) // (2 * n)
                py = y0 + (2 * (y1 - y0) * i + n) // (2 * n)
                pygame.draw.circle(screen, color, (px, py), s.size)
        screen.set_clip(None)

    def _draw_toolbar(self) -> None:
        L, s, screen = self.layout, self.state, self._screen
        screen.fill(TOOLBAR_BG, L.rect("toolbar"))
        # Pen and eraser: the selected one is inverted (dark background, light icon).
        for tool in TOOLS:
            x, y, w, h = L.rect(tool)
            selected = s.tool == tool
            bg, fg = (BUTTON_SELECTED_BG, BUTTON_BG) if selected else (BUTTON_BG, INK)
            screen.fill(bg, (x, y, w, h))
            pygame.draw.rect(screen, INK, (x, y, w, h), 1)
            if tool == "pen":  # a diagonal nib
                pygame.draw.line(screen, fg, (x + 6, y + h - 7), (x + w - 7, y + 6), 3)
                pygame.draw.rect(screen, fg, (x + 5, y + h - 8, 3, 3))
            else:  # an eraser block
                pygame.draw.rect(screen, fg, (x + 5, y + 8, w - 10, h - 14), 2)
                screen.fill(fg, (x + 5, y + 8, 6, h - 14))
        # Colour swatches; the selected one gets a 2-px ring in the gap around it.
        for i, rgb in enumerate(L.colors):
            x, y, w, h = L.rect(f"color{i}")
            screen.fill(rgb, (x, y, w, h))
            if s.color == i:
                pygame.draw.rect(screen, INK, (x - 2, y - 2, w + 4, h + 4), 2)
        # The brush preview in the selected colour is left to the canvas; the slider shows size.
        # Rectangles are given as (along, across, length, thickness) of the track.
        first, c = L.track_coords(*L.slider_point(L.sizes[0]))
        last = L.track_coords(*L.slider_point(L.sizes[-1]))[0]
        self._fill_on_track(TRACK, first, c - 1, last - first + 1, 2)
        for size in L.sizes:  # tick marks
            self._fill_on_track(TRACK, L.track_coords(*L.slider_point(size))[0], c + 5, 1, 3)
        knob = L.track_coords(*L.slider_point(s.size))[0]
        self._fill_on_track(KNOB, knob - 2, c - 7, 5, 11)

    def _fill_on_track(self, color: tuple[int, int, int], along: int, across: int, length: int, thickness: int) -> None:
        """Fill a rectangle given in slider-track coordinates (see `Layout.track_coords`)."""
        x, y = self.layout.track_coords(along, across)
        w, h = self.layout.track_coords(length, thickness)
        self._screen.fill(color, (x, y, w, h))

    def _capture(self) -> np.ndarray:
        raw = pygame.image.tobytes(self._screen, "RGB")
        self._frame = np.frombuffer(raw, dtype=np.uint8).reshape(SCREEN, SCREEN, 3)
        return self._frame.copy()
