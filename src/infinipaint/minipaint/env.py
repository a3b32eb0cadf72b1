"""Minipaint as a Gymnasium environment, registered as `Minipaint-v0`.

    import gymnasium as gym
    import infinipaint.minipaint  # registers the id
    env = gym.make("Minipaint-v0", render_mode="rgb_array")   # layout="column" for another layout
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(np.array([100, 120, 1]))

Observation: the (224, 224, 3) uint8 frame. Action: `(x, y, down)` as a MultiDiscrete
([224, 224, 2]). There is no reward (always 0) and no terminal state; episodes are truncated after
`max_steps`. The world-model env (`InfinipaintDream-v0`) has the same spaces.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .app import Minipaint, validate_action
from .layout import SCREEN, Layout

WINDOW_SCALE = 3


def observation_space() -> spaces.Box:
    return spaces.Box(0, 255, shape=(SCREEN, SCREEN, 3), dtype=np.uint8)


def action_space() -> spaces.MultiDiscrete:
    return spaces.MultiDiscrete([SCREEN, SCREEN, 2])


class FrameWindow:
    """A pygame window showing frames scaled up; shared by the `human` render modes."""

    def __init__(self, title: str, scale: int = WINDOW_SCALE) -> None:
        import pygame

        pygame.display.init()
        self.scale = scale
        self.surface = pygame.display.set_mode((SCREEN * scale, SCREEN * scale))
        pygame.display.set_caption(title)

    def show(self, frame: np.ndarray) -> None:
        import pygame

        image = pygame.image.frombuffer(np.ascontiguousarray(frame).tobytes(), (SCREEN, SCREEN), "RGB")
        self.surface.blit(pygame.transform.scale(image, self.surface.get_size()), (0, 0))
        pygame.display.flip()
        pygame.event.pump()

    def close(self) -> None:
        import pygame

        pygame.display.quit()


class FrameEnv(gym.Env):
    """A paint program behind Gymnasium: subclasses say how to reset and step their frames.

    Shared by Minipaint and the world model (`InfinipaintDream-v0`), so both have the same spaces,
    render modes, truncation and info, and callers never branch on which one they run.
    """

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 12}
    title = "Minipaint"

    def __init__(self, render_mode: str | None = None, max_steps: int = 1000, clip: bool = False) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.render_mode = render_mode
        self.max_steps = max_steps
        self.clip = clip
        self.observation_space = observation_space()
        self.action_space = action_space()
        self._frame = np.full((SCREEN, SCREEN, 3), 255, dtype=np.uint8)
        self._steps = 0
        self._window: FrameWindow | None = None

    def _reset_frame(self, options: dict[str, Any]) -> np.ndarray:
        raise NotImplementedError

    def _step_frame(self, action: tuple[int, int, int]) -> np.ndarray:
        raise NotImplementedError

    def _info(self) -> dict[str, Any]:
        return {"step": self._steps}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)  # both worlds are deterministic
        self._frame = self._reset_frame(options or {})
        self._steps = 0
        if self.render_mode == "human":
            self.render()
        return self._frame.copy(), self._info()

    def step(self, action):
        self._frame = self._step_frame(validate_action(tuple(np.asarray(action).tolist()), clip=self.clip))
        self._steps += 1
        if self.render_mode == "human":
            self.render()
        return self._frame.copy(), 0.0, False, self._steps >= self.max_steps, self._info()

    def render(self):
        if self.render_mode == "rgb_array":
            return self._frame.copy()
        if self.render_mode == "human":
            if self._window is None:
                self._window = FrameWindow(self.title)
            self._window.show(self._frame)
        return None

    def close(self) -> None:
        if self._window is not None:
            self._window.close()
            self._window = None


class MinipaintEnv(FrameEnv):
    """Minipaint on one layout (a name in LAYOUTS, or a Layout)."""

    def __init__(self, render_mode: str | None = None, max_steps: int = 1000, clip: bool = False,
                 layout: str | Layout = "default") -> None:
        super().__init__(render_mode, max_steps, clip)
        self.app = Minipaint(layout)
        self._frame = self.app.frame()

    def _reset_frame(self, options: dict[str, Any]) -> np.ndarray:
        return self.app.reset()

    def _step_frame(self, action: tuple[int, int, int]) -> np.ndarray:
        return self.app.step(action)

    def _info(self) -> dict[str, Any]:
        s = self.app.state
        return {"tool": s.tool, "color": s.color, "size": s.size, "step": self._steps}


def register() -> None:
    if "Minipaint-v0" not in gym.registry:
        gym.register(id="Minipaint-v0", entry_point="infinipaint.minipaint.env:MinipaintEnv")
    if "InfinipaintDream-v0" not in gym.registry:  # the world model, same spaces (loads torch lazily)
        gym.register(id="InfinipaintDream-v0", entry_point="infinipaint.viewer.env:dream_env")
