"""The pygame window shared by `infinipaint play` and `infinipaint dream`: input and display.

    window = PointerWindow("Minipaint", size=(672, 672), frame_rect=(0, 0, 672))
    while window.running:
        sample = window.tick()      # (x, y, down) in 224-px coordinates every 80 ms, else None
        if window.key_pressed("r"): ...
        window.show(frame)          # or draw on window.canvas, then window.present()

Everything is drawn on `canvas`, a surface of fixed logical size; `present()` scales it into the
window, letterboxed, so a resized window shows the same picture and the pointer maps back through
the same transform. `frame_rect = (x, y, side)` is where the Minipaint frame sits on the canvas:
pointer positions are mapped from it to Minipaint pixels.

Sampling. The loop runs at `fps` (60) for a smooth display; the pointer is sampled once every
`sample_ms` (80 ms, the rate the model was trained on), on a fixed schedule (a late frame does
not cause a burst of samples). The pointer can only be read when the loop runs: when a frame is
so late that whole intervals pass, their samples are lost, and `missed` counts them. A click shorter than one interval still gives one `down` sample.
No sample is taken while the pointer is outside the frame (outside the window, over the panels)
with the button up: hovering elsewhere is not a move. A press counts only inside the frame; a
drag that leaves the frame keeps painting along its edge (clamped). `outside` says which case
the last sample tick was. Losing focus releases the button.

`realtime=False` (headless runs) never sleeps: every tick is a sample tick.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame  # noqa: E402

from infinipaint.minipaint import SCREEN  # noqa: E402

TICK_MS = 80  # pointer sampling interval
FPS = 60  # display refresh of the loop

Sample = tuple[int, int, int]


class PointerWindow:
    def __init__(self, title: str, size: tuple[int, int], frame_rect: tuple[int, int, int],
                 sample_ms: int = TICK_MS, fps: int = FPS, realtime: bool = True) -> None:
        pygame.display.init()
        pygame.font.init()
        self.size = size
        self.frame_rect = frame_rect
        self.sample_ms = sample_ms
        self.fps = fps
        self.realtime = realtime
        self.canvas = pygame.Surface(size)
        self.window = pygame.display.set_mode(size, pygame.RESIZABLE)
        pygame.display.set_caption(title)
        self.clock = pygame.time.Clock()
        self.running = True
        self.outside = False  # the last sample tick found the pointer outside the frame
        self.sampled = False  # this tick was a sample tick (even if it returned None)
        self.ticks = 0
        self.missed = 0  # sample intervals that passed while the loop was stalled (no sample could be taken)
        self._keys: list[str] = []
        self._down = False
        self._clicked = False  # a press since the last sample (so a short click is not lost)
        self._view = (0, 0, 1.0)  # canvas offset x, y and scale inside the window
        self._next_sample = time.perf_counter()

    # ---------------------------------------------------------------------------------- input
    def tick(self) -> Sample | None:
        """Wait for the next display frame, handle window events; the pointer sample if one is due."""
        if self.realtime:
            self.clock.tick(self.fps)
        else:
            self.clock.tick()
        self.ticks += 1
        self._keys.clear()
        for event in pygame.event.get():
            self._handle(event)
        self.sampled = not self.realtime
        if self.realtime:
            now = time.perf_counter()
            if now < self._next_sample:
                return None
            self.sampled = True
            step = self.sample_ms / 1000
            late = now - self._next_sample
            if late >= step:
                self.missed += int(late // step)
            self._next_sample = self._next_sample + step if late < step else now + step
        return self.sample()

    def _handle(self, event: pygame.event.Event) -> None:
        if event.type == pygame.QUIT:
            self.running = False
        elif event.type == pygame.KEYDOWN:
            name = pygame.key.name(event.key)
            if name in ("escape", "q"):
                self.running = False
            self._keys.append(name)
        elif event.type == pygame.VIDEORESIZE:
            self.window = pygame.display.set_mode((max(event.w, 64), max(event.h, 64)), pygame.RESIZABLE)
        elif event.type == pygame.MOUSEBUTTONDOWN and event.button == 1:
            if self.to_screen(*event.pos)[2]:
                self._down = self._clicked = True
        elif event.type == pygame.MOUSEBUTTONUP and event.button == 1:
            self._down = False
        elif event.type == getattr(pygame, "WINDOWFOCUSLOST", -1):
            self._down = False

    def sample(self) -> Sample | None:
        """The pointer now, in Minipaint pixels, or None when it is outside the frame, button up."""
        down = self._down or self._clicked
        self._clicked = False
        x, y, inside = self.to_screen(*pygame.mouse.get_pos())
        focused = pygame.mouse.get_focused()
        self.outside = not (focused and inside)
        if self.outside and not down:
            return None
        return x, y, int(down)

    def to_screen(self, mx: int, my: int) -> tuple[int, int, bool]:
        """Window pixel -> Minipaint pixel (clamped to the frame) and whether it is inside the frame."""
        ox, oy, s = self._view
        fx, fy, side = self.frame_rect
        x = math.floor(((mx - ox) / s - fx) * SCREEN / side)
        y = math.floor(((my - oy) / s - fy) * SCREEN / side)
        inside = 0 <= x < SCREEN and 0 <= y < SCREEN
        return min(max(x, 0), SCREEN - 1), min(max(y, 0), SCREEN - 1), inside

    def key_pressed(self, name: str) -> bool:
        return name in self._keys

    @property
    def keys(self) -> list[str]:
        """Names of the keys pressed since the last tick, in order."""
        return list(self._keys)

    # -------------------------------------------------------------------------------- display
    def blit_frame(self, frame: np.ndarray, pos: tuple[int, int], side: int) -> None:
        """Draw a uint8 (H, W, 3) image on the canvas, scaled to side x side (nearest)."""
        self.canvas.blit(pygame.transform.scale(to_surface(frame), (side, side)), pos)

    def present(self) -> None:
        """Show the canvas in the window: scaled to fit, centred, aspect kept."""
        ww, wh = self.window.get_size()
        cw, ch = self.size
        if (ww, wh) == (cw, ch):
            self._view = (0, 0, 1.0)
            self.window.blit(self.canvas, (0, 0))
        else:
            s = min(ww / cw, wh / ch)
            w, h = max(1, int(cw * s)), max(1, int(ch * s))
            ox, oy = (ww - w) // 2, (wh - h) // 2
            self._view = (ox, oy, s)
            self.window.fill((0, 0, 0))
            self.window.blit(pygame.transform.smoothscale(self.canvas, (w, h)), (ox, oy))
        pygame.display.flip()

    def show(self, frame: np.ndarray) -> None:
        """`play`: the frame alone."""
        self.canvas.fill((0, 0, 0))
        fx, fy, side = self.frame_rect
        self.blit_frame(frame, (fx, fy), side)
        self.present()

    @property
    def fps_measured(self) -> float:
        return float(self.clock.get_fps())

    def close(self) -> None:
        pygame.display.quit()


def to_surface(image: np.ndarray) -> pygame.Surface:
    """uint8 (H, W, 3) array -> pygame surface (a copy)."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    return pygame.image.frombuffer(image.tobytes(), image.shape[1::-1], "RGB")
