"""`InfinipaintDream-v0`: the world model behind Minipaint's Gymnasium interface.

    import gymnasium as gym
    env = gym.make("InfinipaintDream-v0", model_dir="weights/cpu")
    frame, info = env.reset()
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from infinipaint.models.world_model import WorldModel


def dream_env(model_dir: str | Path = "weights/cpu", render_mode: str | None = None, max_steps: int = 1000,
              clip: bool = False, world_model: WorldModel | None = None):
    """The world model behind Minipaint's Gymnasium interface (same spaces, render modes, info).

    `reset(options={"frame": f})` starts from frame f instead of a fresh Minipaint screen.
    """
    from infinipaint.minipaint import Minipaint
    from infinipaint.minipaint.env import FrameEnv

    class InfinipaintDreamEnv(FrameEnv):
        title = "Infinipaint dream"

        def __init__(self) -> None:
            super().__init__(render_mode, max_steps, clip)
            self.model = world_model or WorldModel.load(model_dir)
            self._first = Minipaint().reset()

        def _reset_frame(self, options: dict) -> np.ndarray:
            return self.model.reset(np.asarray(options.get("frame", self._first), dtype=np.uint8))

        def _step_frame(self, action: tuple[int, int, int]) -> np.ndarray:
            return self.model.step(action)

    return InfinipaintDreamEnv()
