from __future__ import annotations

import numpy as np
import pytest

from infinipaint.minipaint import LAYOUT, Minipaint


def render_frames(n: int, seed: int) -> np.ndarray:
    """n real Minipaint frames (n, 224, 224, 3) uint8: random colours, tools, sizes and polylines."""
    rng = np.random.default_rng(seed)
    app = Minipaint()
    x0, y0, w, h = LAYOUT.rect("canvas")
    out = []
    for _ in range(n):
        app.reset()
        for _ in range(int(rng.integers(2, 8))):
            for control in (f"color{rng.integers(6)}", "pen" if rng.random() < 0.8 else "eraser"):
                app.step((*LAYOUT.center(control), 1))
                app.step((0, 0, 0))
            app.step((*LAYOUT.slider_point(int(rng.choice(LAYOUT.sizes[:5]))), 1))
            app.step((0, 0, 0))
            for _ in range(int(rng.integers(2, 6))):
                app.step((int(rng.integers(x0, x0 + w)), int(rng.integers(y0, y0 + h)), 1))
            app.step((0, 0, 0))
        out.append(app.frame())
    return np.stack(out)


@pytest.fixture(scope="session")
def minipaint_frames() -> np.ndarray:
    return render_frames(8, seed=0)
