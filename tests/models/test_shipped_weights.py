"""The shipped `weights/cpu` world model loads as a matching pair and behaves like Minipaint on a short
stroke (a smoke test of the real files, not a quality measurement: that is `infinipaint evaluate`)."""

from pathlib import Path

import numpy as np
import pytest

from infinipaint.minipaint import Minipaint
from infinipaint.models.world_model import WorldModel

WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "cpu"


@pytest.mark.skipif(not (WEIGHTS / "dynamics.safetensors").exists(), reason="no shipped weights")
def test_shipped_world_model_paints_a_stroke_like_minipaint():
    wm = WorldModel.load(WEIGHTS)
    assert wm.window == 32 and wm.dynamics.config.context > 0
    assert wm.dynamics.config.paint_palette and wm.dynamics.config.paint_reader  # the canvas is painted by the paint head
    app = Minipaint()
    first = app.reset()
    assert np.array_equal(wm.reset(first), first)  # the FSQ VAE is exact on a blank screen
    steps = [(100, 120, 0), (100, 120, 1), (108, 124, 1), (116, 128, 1), (116, 128, 0)]
    for s in steps:
        truth, pred = app.step(s), wm.step(s)
    painted = (truth != first).any(-1)
    assert painted.sum() > 50
    # the stroke is there, where Minipaint put it, and nothing else moved
    assert (pred != truth).any(-1).sum() < 0.2 * painted.sum()


@pytest.mark.skipif(not (WEIGHTS / "dynamics.safetensors").exists(), reason="no shipped weights")
def test_shipped_world_model_draws_minipaints_toolbar_for_every_press():
    """The toolbar head: every state recorded, and presses on each control give Minipaint's
    toolbar to the pixel."""
    from infinipaint.minipaint import LAYOUT

    wm = WorldModel.load(WEIGHTS, bf16=False)
    assert wm.dynamics.config.toolbar_head and bool(wm.dynamics.toolbar.seen.all())
    app = Minipaint()
    wm.reset(app.reset())
    top = LAYOUT.toolbar_height
    for control in ("color2", "eraser", "color5", "pen", "color0"):
        for action in ((*LAYOUT.center(control), 1), (*LAYOUT.center(control), 0)):
            truth, pred = app.step(action), wm.step(action)
            assert np.array_equal(pred[:top], truth[:top]), control
    for size in (9, 1, 6):
        for action in ((*LAYOUT.slider_point(size), 1), (*LAYOUT.slider_point(size), 0)):
            truth, pred = app.step(action), wm.step(action)
            assert np.array_equal(pred[:top], truth[:top]), size
