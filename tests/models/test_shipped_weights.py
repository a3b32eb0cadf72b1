"""The shipped `weights/cpu` world model behaves like Minipaint on a few scripted steps: a hover
changes nothing, a stroke appears where Minipaint paints it, a press on a swatch or the eraser
selects it. A smoke test of the committed files (they must be there: a missing file fails), not a
quality measurement: that is `infinipaint evaluate` (figures in weights/cpu/MODEL_CARD.md)."""

from pathlib import Path

import numpy as np
import pytest

from infinipaint.evaluation.scoring import read_toolbar
from infinipaint.minipaint import LAYOUT, Minipaint
from infinipaint.models.world_model import WorldModel

WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "cpu"


@pytest.fixture(scope="module")
def wm() -> WorldModel:
    for name in ("vae.json", "vae.safetensors", "dynamics.json", "dynamics.safetensors", "MODEL_CARD.md"):
        assert (WEIGHTS / name).is_file(), f"the shipped weights lack {name}"
    return WorldModel.load(WEIGHTS, bf16=False)


def run(wm: WorldModel, app: Minipaint, steps) -> tuple[np.ndarray, np.ndarray]:
    for s in steps:
        truth, pred = app.step(s), wm.step(s)
    return truth, pred


def test_a_hover_changes_nothing(wm):
    app = Minipaint()
    first = app.reset()
    start = wm.reset(first)
    assert np.array_equal(start, first)  # the VAE is exact on a blank screen
    _, pred = run(wm, app, [(100, 120, 0), (110, 126, 0), (120, 130, 0), (60, 150, 0)])
    assert np.array_equal(pred, start)


def test_a_stroke_appears_where_minipaint_paints_it(wm):
    app = Minipaint()
    first = app.reset()
    wm.reset(first)
    steps = [(100, 120, 0), (100, 120, 1), (108, 124, 1), (116, 128, 1), (124, 132, 1), (124, 132, 0)]
    truth, pred = run(wm, app, steps)
    painted, predicted = (truth != first).any(-1), (pred != first).any(-1)
    assert painted.sum() > 50
    overlap = (painted & predicted).sum() / (painted | predicted).sum()
    assert overlap > 0.6, f"stroke overlap {overlap:.2f}"


@pytest.mark.parametrize("control", ["color3", "eraser"])
def test_a_press_selects_the_control(wm, control):
    app = Minipaint()
    wm.reset(app.reset())
    press = (*LAYOUT.center(control), 1)
    truth, pred = run(wm, app, [press, (press[0], press[1], 0)])
    (want,), _ = read_toolbar(truth[None])
    (got,), _ = read_toolbar(pred[None])
    assert got == want
