"""Minipaint's geometry: every layout, each the single source of its controls' positions.

    from infinipaint.minipaint import LAYOUT, LAYOUTS, get_layout
    x, y, w, h = LAYOUT.rect("pen")       # LAYOUT is LAYOUTS["default"]
    mask = LAYOUT.mask("canvas")          # (224, 224) bool
    x, y = LAYOUT.slider_point(5)         # press here to get brush size 5
    column = get_layout("column")         # another arrangement, palette and brush range

Evaluation, agents and scripts read positions from a layout, never from hard-coded numbers. A
layout is data: the rectangle of every region (toolbar, canvas, pen, eraser, color0..color5,
slider), the six swatch colours and the brush radii of the slider. Both layouts keep controls whose
state interacts close together, so a press on one and the change it causes at the other stay within
the dynamics network's receptive field.

- "default": a 32-px toolbar along the top, the canvas below it; pen and eraser side by side
  (51 px across), the six swatches in a 3 x 2 block (48 px across), then, after a gap of dead
  space, a horizontal slider of radii 1..10. Its frames never change (golden hash).
- "column": a 40-px toolbar down the right edge, the canvas to its left; pen above eraser (51 px
  tall), six other colours in a 2 x 3 block filled column by column (48 px tall), then, after a
  gap, a vertical slider of radii 2..12.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCREEN = 224
WHITE = (255, 255, 255)

Rect = tuple[int, int, int, int]
RGB = tuple[int, int, int]

# The regions every layout names, and the pressable ones among them (in toolbar order).
REGIONS = ("toolbar", "canvas", "pen", "eraser", *(f"color{i}" for i in range(6)), "slider")
CONTROLS = REGIONS[2:]


@dataclass(frozen=True)
class Layout:
    """One arrangement of Minipaint's screen: rectangles `(x, y, w, h)` of every region, the
    swatch colours and the brush sizes the slider offers."""

    name: str  # key in LAYOUTS; recorded with every dataset
    version: int  # bumped whenever this layout's frames change
    rects: dict[str, Rect]  # every region of REGIONS, by name
    colors: tuple[RGB, ...]  # six swatch colours: control color{i} selects colors[i]
    sizes: tuple[int, ...]  # brush radii in pixels, in track order (smallest first)
    slider_axis: str  # "x": the track runs left to right; "y": top to bottom
    slider_start: int  # track coordinate (x or y) of the knob at sizes[0]
    slider_step: int  # track pixels per size step
    initial_size: int = 3  # brush radius after a reset

    def __post_init__(self) -> None:
        if set(self.rects) != set(REGIONS):
            raise ValueError(f"layout {self.name!r} must name exactly {REGIONS}")
        for name, (x, y, w, h) in self.rects.items():
            if not (0 <= x and x + w <= SCREEN and 0 <= y and y + h <= SCREEN and w > 0 and h > 0):
                raise ValueError(f"layout {self.name!r}: {name} {self.rects[name]} is not inside the screen")
        if len(self.colors) != 6 or len(set(self.colors)) != 6 or WHITE in self.colors:
            raise ValueError(f"layout {self.name!r} needs six distinct colours, none white")
        if self.slider_axis not in ("x", "y"):
            raise ValueError(f"slider_axis must be 'x' or 'y', got {self.slider_axis!r}")
        if list(self.sizes) != sorted(set(self.sizes)) or self.sizes[0] < 1 or self.initial_size not in self.sizes:
            raise ValueError(f"layout {self.name!r}: sizes must increase from >= 1 and hold the initial size")
        a0, c0, length, thickness = self.slider_span()
        first, last = self.slider_start, self.slider_start + self.slider_step * (len(self.sizes) - 1)
        if not a0 <= first < last < a0 + length or self.slider_step < 1:
            raise ValueError(f"layout {self.name!r}: the slider track leaves the slider's rectangle")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.rects)

    @property
    def controls(self) -> tuple[str, ...]:
        """Every pressable control: pen, eraser, color0..color5, slider."""
        return CONTROLS

    @property
    def toolbar_height(self) -> int:
        """Height of the toolbar's rectangle (the screen's height for a toolbar down one side)."""
        return self.rects["toolbar"][3]

    def rect(self, name: str) -> Rect:
        if name not in self.rects:
            raise KeyError(f"unknown region {name!r}; known: {', '.join(self.rects)}")
        return self.rects[name]

    def contains(self, name: str, x: int, y: int) -> bool:
        rx, ry, rw, rh = self.rect(name)
        return rx <= x < rx + rw and ry <= y < ry + rh

    def mask(self, name: str) -> np.ndarray:
        """A boolean (224, 224) array, True inside the region (row = y, column = x)."""
        x, y, w, h = self.rect(name)
        m = np.zeros((SCREEN, SCREEN), dtype=bool)
        m[y : y + h, x : x + w] = True
        return m

    def center(self, name: str) -> tuple[int, int]:
        x, y, w, h = self.rect(name)
        return x + w // 2, y + h // 2

    def control_at(self, x: int, y: int) -> str | None:
        """The control under a point, or None (canvas, toolbar gaps)."""
        for name in self.controls:
            if self.contains(name, x, y):
                return name
        return None

    # ------------------------------------------------------------------------------ the slider
    def track_coords(self, x: int, y: int) -> tuple[int, int]:
        """A point as (along the slider's track, across it); applied twice, the point again."""
        return (x, y) if self.slider_axis == "x" else (y, x)

    def slider_span(self) -> Rect:
        """The slider's rectangle in track coordinates: (along start, across start, length, thickness)."""
        x, y, w, h = self.rect("slider")
        return (x, y, w, h) if self.slider_axis == "x" else (y, x, h, w)

    def slider_point(self, size: int) -> tuple[int, int]:
        """The point to press (or drag to) to select a brush size: on the track's centre line."""
        if size not in self.sizes:
            raise ValueError(f"brush size {size} not in {self.sizes}")
        _, c0, _, thickness = self.slider_span()
        return self.track_coords(self.slider_start + self.slider_step * self.sizes.index(size), c0 + thickness // 2)

    def slider_x(self, size: int) -> int:
        """x of `slider_point(size)`."""
        return self.slider_point(size)[0]

    def size_at(self, x: int, y: int) -> int:
        """The brush size for a slider press or drag at (x, y), clamped to the track's ends."""
        along = self.track_coords(x, y)[0]
        i = (along - self.slider_start + self.slider_step // 2) // self.slider_step
        return self.sizes[min(max(i, 0), len(self.sizes) - 1)]


def _top_strip() -> Layout:
    """The default layout: toolbar along the top; pen, eraser, swatches in rows, slider at the right."""
    t, b, s, pitch = 32, 24, 13, 16  # toolbar height, button side, swatch side and pitch (3-px gaps)
    sizes = tuple(range(1, 11))
    start, step = 180, 4  # slider track
    rects: dict[str, Rect] = {
        "toolbar": (0, 0, SCREEN, t),
        "canvas": (0, t, SCREEN, SCREEN - t),
        "pen": (4, (t - b) // 2, b, b),
        "eraser": (4 + b + 3, (t - b) // 2, b, b),
    }
    x0 = 4 + 2 * b + 3 + 6  # swatches start after a gap following the eraser
    for i in range(6):
        row, col = divmod(i, 3)
        rects[f"color{i}"] = (x0 + col * pitch, 2 + row * (s + 2), s, s)
    lo, hi = start - 4, start + step * (len(sizes) - 1) + 4
    rects["slider"] = (lo, (t - b) // 2, hi - lo + 1, b)
    colors = (
        (0, 0, 0),  # black
        (230, 25, 45),  # red
        (30, 170, 60),  # green
        (20, 80, 230),  # blue
        (250, 200, 0),  # yellow
        (150, 40, 190),  # purple
    )
    return Layout("default", 2, rects, colors, sizes, "x", start, step)


def _right_column() -> Layout:
    """The column layout: toolbar down the right edge; pen over eraser, swatches, vertical slider."""
    w, b, s, pitch = 40, 24, 14, 17  # toolbar width, button side, swatch side and pitch (3-px gaps)
    x0 = SCREEN - w
    sizes = tuple(range(2, 13))
    start, step = 140, 4  # slider track (y): 40 px, so a jump of the knob fits a 32-cell window around the press
    rects: dict[str, Rect] = {
        "toolbar": (x0, 0, w, SCREEN),
        "canvas": (0, 0, x0, SCREEN),
        "pen": (x0 + (w - b) // 2, 8, b, b),
        "eraser": (x0 + (w - b) // 2, 8 + b + 3, b, b),
    }
    y0 = 8 + 2 * b + 3 + 13  # swatches start after a gap following the eraser
    for i in range(6):
        col, row = divmod(i, 3)  # filled column by column
        rects[f"color{i}"] = (x0 + 4 + col * pitch, y0 + row * pitch, s, s)
    lo, hi = start - 4, start + step * (len(sizes) - 1) + 4
    rects["slider"] = (x0 + (w - b) // 2, lo, b, hi - lo + 1)
    colors = (
        (0, 110, 120),  # teal
        (255, 120, 0),  # orange
        (210, 0, 140),  # magenta
        (90, 45, 10),  # brown
        (0, 190, 255),  # sky blue
        (130, 210, 0),  # lime
    )
    return Layout("column", 1, rects, colors, sizes, "y", start, step)


LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (_top_strip(), _right_column())}
LAYOUT = LAYOUTS["default"]
LAYOUT_VERSION = LAYOUT.version
COLORS = LAYOUT.colors


def get_layout(layout: str | Layout) -> Layout:
    """A layout by name (a key of LAYOUTS), or the given Layout itself."""
    if isinstance(layout, Layout):
        return layout
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    return LAYOUTS[layout]
