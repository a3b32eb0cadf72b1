"""The shipped `weights/cpu` world model behaves like Minipaint on a few scripted steps: a hover
changes nothing, a stroke appears where Minipaint paints it in the selected colour, a press on each
swatch and on the eraser selects it; its rollout of a fixed episode matches `reference.json`. A
missing committed file fails. (A drag from a button onto the canvas still paints a line: the
evaluation's behaviour events measure it, figures in weights/cpu/MODEL_CARD.md.)"""

from pathlib import Path

import numpy as np
import pytest

from infinipaint.evaluation.scoring import read_toolbar
from infinipaint.minipaint import LAYOUT, Minipaint
from infinipaint.models.world_model import WorldModel

WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "cpu"


@pytest.fixture(scope="module")
def wm() -> WorldModel:
    for name in ("vae.json", "vae.safetensors", "dynamics.json", "dynamics.safetensors", "MODEL_CARD.md",
                 "reference.json"):
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


def test_a_stroke_comes_out_in_the_selected_colour(wm):
    app = Minipaint()
    first = app.reset()
    wm.reset(first)
    press = (*LAYOUT.center("color4"), 1)
    steps = [press, (press[0], press[1], 0), (90, 110, 0), (90, 110, 1), (100, 116, 1), (110, 122, 1),
             (120, 128, 1), (120, 128, 0)]
    truth, pred = run(wm, app, steps)
    painted = (truth != first).any(-1)
    painted[: LAYOUT.rect("canvas")[1]] = False
    colour = truth[painted][0]
    assert (truth[painted] == colour).all()
    share = (pred[painted] == colour).all(-1).mean()
    assert share > 0.7, f"{share:.0%} of the stroke in the selected colour"


@pytest.mark.parametrize("control", ["color0", "color1", "color2", "color3", "color4", "color5", "eraser"])
def test_a_press_selects_the_control(wm, control):
    app = Minipaint()
    first = app.reset()
    if control == "color0":  # selected at reset: select another first
        first = app.step((*LAYOUT.center("color3"), 1))
        first = app.step((*LAYOUT.center("color3"), 0))
    wm.reset(first)
    press = (*LAYOUT.center(control), 1)
    truth, pred = run(wm, app, [press, (press[0], press[1], 0)])
    (want,), _ = read_toolbar(truth[None])
    (got,), _ = read_toolbar(pred[None])
    assert got == want


@pytest.mark.slow
def test_rollouts_match_the_recorded_reference():
    """Quality regression: the shipped model's rollout of the reference episode reproduces the
    per-step SSIM and exact share recorded with the weights (`infinipaint reference --write`)."""
    import json

    from infinipaint.evaluation.reference import FILE, TOLERANCE, compare, reference_scores

    saved = json.loads((WEIGHTS / FILE).read_text())
    current = reference_scores(WEIGHTS)
    assert not compare(current, saved), f"beyond {TOLERANCE}: {compare(current, saved)}"
