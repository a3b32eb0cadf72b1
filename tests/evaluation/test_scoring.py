"""The harness's metrics on hand-made cases, and the behaviour logic on synthetic predictions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from infinipaint.evaluation.scoring import (
    EXACT_TOL, VISIBLE_DELTA, VISIBLE_PIXELS, Tracker, eraser_l1, exact_share, frame_scores, phase_of,
    read_toolbar, response_correct, visible_error,
)
from infinipaint.metrics import PSNR_CAP_DB
from infinipaint.minipaint import LAYOUT, Minipaint, MinipaintState

CX, CY = LAYOUT.center("canvas")


def blank() -> np.ndarray:
    return Minipaint().reset()


def stroke(dx: int = 0) -> np.ndarray:
    app = Minipaint()
    app.reset()
    app.step((CX - 40 + dx, CY, 1))
    app.step((CX + 40 + dx, CY + 10, 1))
    return app.step((CX + 40 + dx, CY + 10, 0))


def test_identical_frames():
    f = stroke()[None]
    s = frame_scores(f, f)
    assert s["ssim"][0] == pytest.approx(1.0, abs=1e-6)
    assert s["psnr"][0] == PSNR_CAP_DB
    assert s["canvas_ssim"][0] == pytest.approx(1.0, abs=1e-6) and s["toolbar_ssim"][0] == pytest.approx(1.0, abs=1e-6)
    assert s["exact_share"][0] == 1.0 and s["wrong_pixels"][0] == 0
    assert not visible_error(f, f)[0]


def test_one_pixel_change():
    truth = blank()[None]
    pred = truth.copy()
    pred[0, 100, 100] = (55, 55, 55)  # 200 levels off in every channel, on the white canvas
    s = frame_scores(pred, truth)
    mse = 3 * (200 / 255) ** 2 / (224 * 224 * 3)
    assert s["psnr"][0] == pytest.approx(10 * math.log10(1 / mse), abs=1e-3)
    assert 0.99 < s["ssim"][0] < 1.0
    assert s["toolbar_ssim"][0] == pytest.approx(1.0, abs=1e-6) and s["canvas_ssim"][0] < 1.0
    assert s["exact_share"][0] == pytest.approx(1 - 1 / 224**2)
    assert s["wrong_pixels"][0] == 1 and not visible_error(pred, truth)[0]  # one pixel is not visible
    small = truth.copy()
    small[0, 100, 100, 0] -= EXACT_TOL  # within tolerance: still exact
    assert exact_share(small, truth)[0] == 1.0
    small[0, 100, 100, 0] -= 1
    assert exact_share(small, truth)[0] == pytest.approx(1 - 1 / 224**2)


def test_visible_error_threshold():
    truth = blank()[None]
    pred = truth.copy()
    pred[0, 100:103, 100:103] = 255 - VISIBLE_DELTA  # 3x3 pixels exactly at the threshold: not wrong
    assert not visible_error(pred, truth)[0]
    pred[0, 100:103, 100:103] = 255 - VISIBLE_DELTA - 1  # just over it, 9 pixels: visible
    assert VISIBLE_PIXELS == 9 and visible_error(pred, truth)[0]


def test_shifted_stroke():
    truth, shifted = stroke()[None], stroke(dx=3)[None]
    s = frame_scores(shifted, truth)
    assert s["toolbar_ssim"][0] == pytest.approx(1.0, abs=1e-6)  # the toolbar did not move
    assert s["canvas_ssim"][0] < s["ssim"][0] < 0.99
    assert s["exact_share"][0] < 1.0 and visible_error(shifted, truth)[0]
    worse = frame_scores(stroke(dx=8)[None], truth)
    assert worse["ssim"][0] < s["ssim"][0] and worse["psnr"][0] < s["psnr"][0]


def test_phases():
    assert [phase_of(t) for t in (1, 150, 151, 500, 501, 2000)] == ["early", "early", "mid", "mid", "late", "late"]
    with pytest.raises(ValueError):
        phase_of(0)


def test_tracker_curves_and_onsets():
    """Two episodes (5 and 3 steps): episode 0 exact until a visible blob at step 3, then a scramble
    below SSIM 0.95 at step 5; episode 1 exact throughout."""
    rng = np.random.default_rng(0)
    truth = np.stack([stroke(), stroke(dx=5)])
    tracker = Tracker([5, 3])
    for t in range(1, 6):
        rows = np.arange(2) if t <= 3 else np.arange(1)
        pred = truth[rows].copy()
        if t >= 3:
            pred[0, 120:124, 50:54] = 0  # 16 black pixels on white
        if t == 5:
            pred[0, 40:] = rng.integers(0, 256, pred[0, 40:].shape, dtype=np.uint8)
        tracker.update(t, rows, ["hover"] * len(rows), truth[rows], truth[rows], truth[rows], pred, ceiling=truth[rows])
    m = tracker.summary()
    assert m["steps"] == [1, 2, 3, 4, 5] and m["episodes_per_step"] == [2, 2, 2, 1, 1]
    assert m["visible_error_onset"]["per_episode"] == [3, None] and m["visible_error_onset"]["never"] == 1
    assert m["visible_error_onset"]["ceiling"]["never"] == 2
    assert m["onset_095_per_episode"] == [5, None] and m["onset_095_mean"] == 5.0 and m["onset_095_never"] == 1
    assert m["exact_share"][0] == 1.0 and m["exact_share"][2] == pytest.approx(1 - 16 / 224**2 / 2)
    assert m["ssim_std"][0] == pytest.approx(0.0, abs=1e-6) and m["ssim_std"][3] == 0.0  # one episode left
    assert m["psnr_mean"][0] == PSNR_CAP_DB and m["ceiling_psnr"][4] == PSNR_CAP_DB
    assert m["phases"]["early"]["frames"] == 8 and m["phases"]["mid"]["frames"] == 0 and m["phases"]["mid"]["ssim"] is None
    assert len(m["regions"]["canvas"]["per_step"]) == 5


# ------------------------------------------------------------------------------ behaviour
def after_press(control: str, state: MinipaintState = MinipaintState()) -> tuple[np.ndarray, np.ndarray]:
    """(frame before, frame after) a press on `control` (the slider at size 7)."""
    app = Minipaint()
    before = app.reset(state)
    point = LAYOUT.slider_point(7) if control == "slider" else LAYOUT.center(control)
    return before, app.step((*point, 1))


def test_read_toolbar_exact_and_robust():
    rng = np.random.default_rng(1)
    states = [("pen", 0, 3), ("eraser", 4, 1), ("pen", 5, 10), ("eraser", 2, 6)]
    frames = np.stack([Minipaint().reset(MinipaintState(tool=t, color=c, size=s)) for t, c, s in states])
    got, dist = read_toolbar(frames)
    assert got == states and np.all(dist == 0)
    noisy = np.clip(frames.astype(int) + rng.normal(0, 30, frames.shape), 0, 255).astype(np.uint8)
    assert read_toolbar(noisy)[0] == states


@pytest.mark.parametrize("control", ["pen", "eraser", "color3", "slider"])
def test_response_right_and_wrong(control):
    start = MinipaintState(tool="eraser" if control == "pen" else "pen", color=1, size=3)
    before, truth = after_press(control, start)
    # Wrong: the prediction still shows the state before the press (for colour: ring on colour 1).
    for pred, expected in ((truth, 1.0), (before, 0.0)):
        tracker = Tracker([1])
        tracker.update(1, np.array([0]), [f"press_{control}"], before[None], truth[None], before[None], pred[None])
        r = tracker.summary()["responses"]
        assert r[control]["early"] == {"value": expected, "n": 1}
        group = "tool" if control in ("pen", "eraser") else "color" if control.startswith("color") else None
        if group:
            assert r[group]["early"]["value"] == expected


def test_response_wrong_colour_ring():
    _, truth = after_press("color2")
    wrong = Minipaint().reset(MinipaintState(color=5))  # ring around colour 5 instead of 2
    (ps, ts), _ = read_toolbar(np.stack([wrong, truth]))
    assert not response_correct("color2", ps, ts) and response_correct("pen", ps, ts)


def test_eraser_l1():
    prev = blank()
    prev[100:102, 100:105] = 0  # 10 black pixels
    truth = blank()  # the eraser turned them white
    pred = truth.copy()
    pred[100:102, 100:105] = 128  # half-erased
    assert eraser_l1(prev, truth, pred) == pytest.approx(127.0)
    assert eraser_l1(prev, truth, truth) == 0.0
    assert eraser_l1(truth, truth, pred) is None  # the step changed nothing: not counted


@pytest.mark.parametrize("drawn", [True, False])
def test_empty_pen_strokes(drawn):
    app = Minipaint()
    frames = [app.reset()]
    steps = [(CX - 30, CY, 1), (CX, CY, 1), (CX + 30, CY, 1), (CX + 30, CY, 0), (CX, CY + 20, 0)]
    kinds = ["draw", "draw", "draw", "idle", "hover"]
    frames += [app.step(s) for s in steps]
    tracker = Tracker([len(steps)])
    prev_pred = frames[0]
    for t in range(1, len(steps) + 1):
        pred = frames[t] if drawn else frames[0]  # a model that draws nothing
        tracker.update(t, np.array([0]), [kinds[t - 1]], frames[t - 1][None], frames[t][None], prev_pred[None], pred[None])
        prev_pred = pred
    assert tracker.summary()["empty_pen_strokes"]["early"] == {"value": 0.0 if drawn else 1.0, "n": 1}


@pytest.mark.parametrize("model", ["right", "wrong colour", "nothing"])
def test_pen_ink_is_the_share_of_a_stroke_in_its_true_colour(model):
    app = Minipaint()
    frames = [app.reset()]
    steps = [(CX - 30, CY, 1), (CX, CY, 1), (CX + 30, CY, 1), (CX + 30, CY, 0)]
    kinds = ["draw", "draw", "draw", "idle"]
    frames += [app.step(s) for s in steps]
    footprint = (frames[3] != frames[0]).any(axis=-1)
    ink = "#" + "".join(f"{v:02x}" for v in frames[3][footprint][0])
    tracker = Tracker([len(steps)])
    prev_pred = frames[0]
    for t in range(1, len(steps) + 1):
        pred = frames[t].copy()
        if model == "wrong colour":  # the same stroke in another colour
            pred[(frames[t] != frames[0]).any(axis=-1)] = (200, 30, 30)
        elif model == "nothing":
            pred = frames[0]
        tracker.update(t, np.array([0]), [kinds[t - 1]], frames[t - 1][None], frames[t][None], prev_pred[None], pred[None])
        prev_pred = pred
    summary = tracker.summary()
    want = 1.0 if model == "right" else 0.0
    assert summary["pen_ink"]["early"] == {"value": want, "n": 1}
    assert summary["pen_ink"]["by_colour"] == {ink: {"value": want, "n": 1}}
    assert summary["empty_pen_strokes"]["early"]["value"] == (1.0 if model == "nothing" else 0.0)


def test_toolbar_slips():
    """A prediction that switches to the eraser on a dead click and back on the next press slips once, on
    the dead click; the frames that show the wrong tool count towards the wrong-state share."""
    pen, eraser = (Minipaint().reset(MinipaintState(tool=t)) for t in ("pen", "eraser"))
    kinds = ["hover", "dead_click", "idle", "hover", "press_pen"]
    preds = [pen, eraser, eraser, eraser, pen]
    tracker = Tracker([len(kinds)])
    for t, (kind, pred) in enumerate(zip(kinds, preds), start=1):
        tracker.update(t, np.array([0]), [kind], pen[None], pen[None], pen[None], pred[None])
    slips = tracker.summary()["toolbar_slips"]
    assert slips["per_episode"] == [[{"step": 2, "kind": "dead_click", "wrong": ["tool"]}]]
    assert slips["by_kind"] == {"dead_click": 1}
    assert slips["phases"]["early"] == {"slips": 1, "wrong_share": pytest.approx(3 / 5)}
    assert slips["phases"]["mid"] == {"slips": 0, "wrong_share": None}


def scripted_drag_from_swatch() -> tuple[list[np.ndarray], list[str], np.ndarray]:
    """Minipaint frames of: hover, a press on swatch 3 dragged onto the canvas, release, hover; the
    recorded activities of those steps; and the frames of a model that paints the drag's line."""
    app = Minipaint()
    frames = [app.reset()]
    sx, sy = LAYOUT.center("color3")
    steps = [(sx, sy - 2, 0), (sx, sy, 1), (sx, sy + 30, 1), (sx + 20, sy + 60, 1), (sx + 20, sy + 60, 0), (CX, CY, 0)]
    acts = ["move", "control_drag", "control_drag", "control_drag", "control_drag", "hover"]
    frames += [app.step(s) for s in steps]
    painter = Minipaint()
    painter.reset()
    painter.step((sx, sy + 30, 1))
    line = painter.step((sx + 20, sy + 60, 1))
    return frames, acts, line


@pytest.mark.parametrize("model", ["right", "paints", "no_selection"])
def test_behaviour_drag_from_a_control(model):
    frames, acts, line = scripted_drag_from_swatch()
    assert not (frames[4][LAYOUT.rect("canvas")[1]:] != frames[0][LAYOUT.rect("canvas")[1]:]).any()  # nothing painted
    tracker = Tracker([len(acts)])
    prev_pred = frames[0]
    for t in range(1, len(acts) + 1):
        pred = frames[t]
        if model == "paints" and t >= 4:  # the line a model without the drag's origin draws
            pred = np.where((line != frames[0]).any(-1, keepdims=True), line, frames[t])
        if model == "no_selection":  # never shows the press on the swatch
            pred = frames[0]
        tracker.update(t, np.array([0]), ["hover"] * 1, frames[t - 1][None], frames[t][None], prev_pred[None],
                       pred[None], activities=[acts[t - 1]])
        prev_pred = pred
    b = tracker.summary()["behaviour"]
    drag = b["drags_from_controls"]["early"]
    assert drag["right"] == {"value": float(model == "right"), "n": 1}
    assert drag["made_up"]["value"] == float(model == "paints")
    assert drag["missed"]["value"] == float(model == "no_selection")
    assert b["presses_near_edges"]["all"]["right"]["n"] == 0


def test_behaviour_click_outside_a_control():
    app = Minipaint()
    frames = [app.reset()]
    x, y, w, h = LAYOUT.rect("color2")
    steps = [(x + w + 1, y + h // 2, 1), (x + w + 1, y + h // 2, 0), (x + w // 2, y + h // 2, 1), (x + w // 2, y + h // 2, 0)]
    frames += [app.step(s) for s in steps]
    assert (frames[2] == frames[0]).all() and not (frames[4] == frames[0]).all()  # outside: nothing; inside: selects
    for selects_outside in (False, True):
        tracker = Tracker([4])
        preds = [frames[0], frames[4] if selects_outside else frames[1], frames[4] if selects_outside else frames[2],
                 frames[3], frames[4]]
        acts = ["edge_work", "edge_work", "color_pick", "color_pick"]
        for t in range(1, 5):
            tracker.update(t, np.array([0]), ["dead_click"], frames[t - 1][None], frames[t][None], preds[t - 1][None],
                           preds[t][None], activities=[acts[t - 1]])
        near = tracker.summary()["behaviour"]["presses_near_edges"]["early"]
        assert near["right"] == {"value": 0.0 if selects_outside else 1.0, "n": 1}
        assert near["made_up"]["value"] == float(selects_outside)
