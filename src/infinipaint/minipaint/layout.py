"""Minipaint's geometry: the single source of every control's position.

    from infinipaint.minipaint import LAYOUT
    x, y, w, h = LAYOUT.rect("pen")
    mask = LAYOUT.mask("canvas")          # (224, 224) bool
    x, y = LAYOUT.slider_point(5)         # press here to get brush size 5

Evaluation, agents and scripts read positions from here, never from hard-coded numbers.
The toolbar is a 32-px strip along the top; the canvas is everything below it. Controls whose
state interacts sit close together, so a press on one and the change it causes at the other stay
within the dynamics network's receptive field: pen and eraser side by side (51 px across), the six
colour swatches in a 3 x 2 block (48 px across), then, after a gap of dead space, the slider.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SCREEN = 224
LAYOUT_VERSION = 2

Rect = tuple[int, int, int, int]

# Six colours far apart in RGB, so a blurred swatch is still unambiguous.
COLORS: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0),  # black
    (230, 25, 45),  # red
    (30, 170, 60),  # green
    (20, 80, 230),  # blue
    (250, 200, 0),  # yellow
    (150, 40, 190),  # purple
)
WHITE = (255, 255, 255)


@dataclass(frozen=True)
class Layout:
    """Rectangles `(x, y, w, h)` of every region, and the brush sizes the slider offers."""

    version: int = LAYOUT_VERSION
    toolbar_height: int = 32
    button: int = 24  # pen / eraser buttons are square
    swatch: int = 13  # colour swatches are square
    swatch_pitch: int = 16  # 3-px gaps leave room for the 2-px selection ring
    swatch_columns: int = 3  # swatches per row (two rows)
    slider_x0: int = 180  # track x of the smallest size
    slider_step: int = 4  # track pixels per size step
    sizes: tuple[int, ...] = tuple(range(1, 11))  # brush radius in pixels
    rects: dict[str, Rect] = field(init=False)

    def __post_init__(self) -> None:
        t = self.toolbar_height
        b, s = self.button, self.swatch
        rects: dict[str, Rect] = {
            "toolbar": (0, 0, SCREEN, t),
            "canvas": (0, t, SCREEN, SCREEN - t),
            "pen": (4, (t - b) // 2, b, b),
            "eraser": (4 + b + 3, (t - b) // 2, b, b),
        }
        x0 = 4 + 2 * b + 3 + 6  # colours start after a gap following the eraser
        for i in range(len(COLORS)):
            row, col = divmod(i, self.swatch_columns)
            rects[f"color{i}"] = (x0 + col * self.swatch_pitch, 2 + row * (s + 2), s, s)
        lo = self.slider_x0 - 4
        hi = self.slider_x0 + self.slider_step * (len(self.sizes) - 1) + 4
        rects["slider"] = (lo, (t - b) // 2, hi - lo + 1, b)
        object.__setattr__(self, "rects", rects)
        for name, (x, y, w, h) in rects.items():
            assert 0 <= x and x + w <= SCREEN and 0 <= y and y + h <= SCREEN, name

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.rects)

    @property
    def controls(self) -> tuple[str, ...]:
        """Every pressable control, in toolbar order."""
        return ("pen", "eraser", *(f"color{i}" for i in range(len(COLORS))), "slider")

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

    def slider_x(self, size: int) -> int:
        """Track x of the knob for a brush size."""
        if size not in self.sizes:
            raise ValueError(f"brush size {size} not in {self.sizes}")
        return self.slider_x0 + self.slider_step * self.sizes.index(size)

    def slider_point(self, size: int) -> tuple[int, int]:
        """The point to press (or drag to) to select a brush size."""
        return self.slider_x(size), self.center("slider")[1]

    def size_at(self, x: int) -> int:
        """The brush size for a slider press or drag at column x (clamped to the track)."""
        i = (x - self.slider_x0 + self.slider_step // 2) // self.slider_step
        return self.sizes[min(max(i, 0), len(self.sizes) - 1)]


LAYOUT = Layout()
