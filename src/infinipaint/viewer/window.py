"""The pygame window shared by `infinipaint play` and `infinipaint dream`: input and display.

    window = PointerWindow("Minipaint", scale=3)
    while window.running:
        sample = window.tick()          # (x, y, down) in 224-px coordinates every 80 ms, or None
        window.show(frame)

The pointer is sampled once per tick (80 ms, the rate the model was trained on). Positions are
mapped from window pixels to Minipaint pixels and clamped to the screen, so a pointer dragged
outside the window keeps painting along the edge instead of raising. While the pointer is outside
an unfocused window no sample is taken.
"""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame  # noqa: E402

from infinipaint.minipaint import SCREEN  # noqa: E402

TICK_MS = 80


class PointerWindow:
    def __init__(self, title: str, scale: int = 3, width: int | None = None, tick_ms: int = TICK_MS) -> None:
        pygame.display.init()
        pygame.font.init()
        self.scale = scale
        self.tick_ms = tick_ms
        self.size = (width or SCREEN * scale, SCREEN * scale)
        self.surface = pygame.display.set_mode(self.size, pygame.RESIZABLE)
        pygame.display.set_caption(title)
        self.clock = pygame.time.Clock()
        self.running = True
        self._keys: set[str] = set()
        self._down = False

    def tick(self) -> tuple[int, int, int] | None:
        """Wait for the next 80-ms tick, handle window events, and sample the pointer."""
        self.clock.tick(1000 / self.tick_ms)
        self._keys.clear()
        for event in pygame.event.get():
            if event.type == pygame.QUIT:
                self.running = False
            elif event.type == pygame.KEYDOWN:
                name = pygame.key.name(event.key)
                if name in ("escape", "q"):
                    self.running = False
                self._keys.add(name)
            elif event.type == pygame.VIDEORESIZE:
                self.size = (max(event.w, 64), max(event.h, 64))
                self.surface = pygame.display.set_mode(self.size, pygame.RESIZABLE)
            elif event.type == pygame.MOUSEBUTTONDOWN and event.button == 1:
                self._down = True
            elif event.type == pygame.MOUSEBUTTONUP and event.button == 1:
                self._down = False
        if not pygame.mouse.get_focused() and not self._down:
            return None
        mx, my = pygame.mouse.get_pos()
        return self.to_screen(mx, my) + (int(self._down),)

    def to_screen(self, mx: int, my: int) -> tuple[int, int]:
        """Window pixel -> Minipaint pixel (the main frame fills the left square of the window)."""
        side = min(self.size[1], self.size[0])
        x = int(mx * SCREEN / side)
        y = int(my * SCREEN / side)
        return min(max(x, 0), SCREEN - 1), min(max(y, 0), SCREEN - 1)

    def key_pressed(self, name: str) -> bool:
        return name in self._keys

    def blit_frame(self, frame: np.ndarray, pos: tuple[int, int], side: int) -> None:
        image = pygame.image.frombuffer(np.ascontiguousarray(frame).tobytes(), frame.shape[1::-1], "RGB")
        self.surface.blit(pygame.transform.scale(image, (side, side)), pos)

    def show(self, frame: np.ndarray) -> None:
        self.surface.fill((0, 0, 0))
        self.blit_frame(frame, (0, 0), min(self.size))
        pygame.display.flip()

    def close(self) -> None:
        pygame.display.quit()
