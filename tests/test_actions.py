"""ActionStream rules (property tests) and the network encoding of actions."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from infinipaint.actions import (
    DEAD_ZONE, LATENT, MAX_STEP, RESET_ACTION, ActionStream, action_planes, encode_action, encode_pair,
    GEOMETRY_REACH, brush_footprint, heatmap_center, latent_coord, pair_planes, stroke_geometry, substeps,
)
from infinipaint.minipaint import SCREEN, Minipaint


def dist(a, b) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


@st.composite
def pointer_paths(draw):
    """Raw samples as a person's pointer: a walk with small and large moves, pauses, clicks."""
    n = draw(st.integers(1, 80))
    x, y = draw(st.integers(0, SCREEN - 1)), draw(st.integers(0, SCREEN - 1))
    out = []
    for _ in range(n):
        scale = draw(st.sampled_from([0, 2, 5, 15, 60, 223]))
        x = min(max(x + draw(st.integers(-scale, scale)), 0), SCREEN - 1)
        y = min(max(y + draw(st.integers(-scale, scale)), 0), SCREEN - 1)
        out.append((x, y, draw(st.integers(0, 1))))
    return out


def runs(buttons):
    return [b for i, b in enumerate(buttons) if i == 0 or buttons[i - 1] != b]


@settings(max_examples=300, deadline=None)
@given(pointer_paths())
def test_stream_properties(samples):
    stream = ActionStream()
    steps, last = [], None
    for x, y, down in samples:
        out = stream.push(x, y, down)
        if last is None:
            assert out == [(x, y, down)]  # the first sample is always emitted
        elif not out:  # dropped: only a small move with the same button
            assert down == last[2] and dist((x, y), last) <= DEAD_ZONE
        elif down and not last[2]:
            assert out == [(x, y, 1)]  # a press is one step at the sample
        elif not down and last[2]:  # release: drag to the sample if it moved, then one idle step
            assert out[-1][2] == 0 and all(s[2] == 1 for s in out[:-1])
            assert out[-1][:2] == ((x, y) if dist((x, y), last) > DEAD_ZONE else last[:2])
        else:
            assert out[-1] == (x, y, down)  # endpoints preserved
        steps += out
        last = steps[-1] if steps else None
    assert ActionStream.process(samples) == steps
    for s in steps:
        assert all(isinstance(v, int) for v in s) and 0 <= s[0] < SCREEN and 0 <= s[1] < SCREEN and s[2] in (0, 1)
    for a, b in zip(steps, steps[1:]):
        if a[2] == b[2]:  # drag or hover: never in the dead zone, never longer than MAX_STEP
            assert DEAD_ZONE < dist(a, b) <= MAX_STEP
        if b[2] == 0 and a[2] == 1:
            assert b[:2] == a[:2]  # the idle step marks the end of a stroke, in place
        if b[2] == 0 and b[:2] == a[:2]:
            assert a[2] == 1  # idle (still, button up) only right after a stroke
    assert runs([s[2] for s in steps]) == runs([s[2] for s in samples])  # no button change lost


def test_substeps_bounds_exhaustive_small_and_long():
    for dx in range(-40, 41):
        for dy in range(-40, 41):
            if math.hypot(dx, dy) <= DEAD_ZONE:
                continue
            pts = substeps(100, 100, 100 + dx, 100 + dy)
            assert pts[-1] == (100 + dx, 100 + dy)
            prev = (100, 100)
            for p in pts:
                assert DEAD_ZONE < dist(p, prev) <= MAX_STEP
                prev = p
    pts = substeps(0, 0, 223, 223)  # rounding may need one sub-step more than ceil(d / 12)
    assert math.ceil(math.hypot(223, 223) / MAX_STEP) <= len(pts) <= math.ceil(math.hypot(223, 223) / MAX_STEP) + 1
    assert pts[-1] == (223, 223) and all(dist(a, b) <= MAX_STEP for a, b in zip([(0, 0)] + pts, pts))


def test_stream_examples_and_reset():
    s = ActionStream()
    assert s.push(10, 40, 0) == [(10, 40, 0)]
    assert s.push(12, 41, 0) == []  # dead zone
    assert s.push(13, 40, 1) == [(13, 40, 1)]  # a press is never dropped
    assert s.push(14, 40, 1) == []
    assert s.push(37, 40, 1) == [(25, 40, 1), (37, 40, 1)]  # 24 px: two 12-px sub-steps
    assert s.push(38, 41, 0) == [(37, 40, 0)]  # release in place: one idle step
    assert s.push(38, 41, 0) == []  # pauses give nothing
    assert s.push(37, 40, 1) == [(37, 40, 1)]
    assert s.push(47, 40, 0) == [(47, 40, 1), (47, 40, 0)]  # release after a move: drag, then idle
    s.reset()
    assert s.push(47, 40, 0) == [(47, 40, 0)]


@pytest.mark.parametrize("bad", [(224, 0, 0), (-1, 5, 0), (5, 5, 2), (1.5, 3, 0), (float("nan"), 3, 0)])
def test_stream_rejects_bad_samples(bad):
    with pytest.raises(ValueError):
        ActionStream().push(*bad)
    with pytest.raises(ValueError):
        ActionStream.process([(5, 5, 0), bad])


def test_reset_action_is_minipaint_reset_state():
    s = Minipaint().state
    assert RESET_ACTION == (*s.cursor, int(s.down))


def test_encode_action_shape_peak_and_button():
    a = encode_action(2, 2, 1)  # pixel 2 is the centre of latent cell 0: (2 + 0.5) / 4 - 0.5 = 0.125
    assert a.shape == (LATENT, LATENT, 2) and a.dtype == np.float32
    assert np.all(a[..., 1] == 1) and np.all(encode_action(2, 2, 0)[..., 1] == 0)
    assert np.unravel_index(np.argmax(a[..., 0]), (LATENT, LATENT)) == (0, 0)
    assert latent_coord(1.5) == 0.0 and latent_coord(5.5) == 1.0  # cell centres
    assert encode_action(5, 9, 0)[..., 0].max() < 1  # peak 1 only at an exact cell centre
    assert a[..., 0].min() >= 0
    assert encode_pair((5, 9, 0), (7, 9, 1)).shape == (LATENT, LATENT, 4)
    np.testing.assert_array_equal(encode_pair((5, 9, 0), (7, 9, 1))[..., 2:], encode_action(7, 9, 1))


def test_heatmap_centre_recovered_everywhere():
    rng = np.random.default_rng(0)
    points = [(x, x) for x in range(SCREEN)] + [tuple(rng.integers(0, SCREEN, 2)) for _ in range(300)]
    points += [(0, SCREEN - 1), (SCREEN - 1, 0)]
    worst = 0.0
    for x, y in points:
        cx, cy = heatmap_center(encode_action(int(x), int(y), 0)[..., 0])
        worst = max(worst, abs(cx - latent_coord(x)), abs(cy - latent_coord(y)))
    assert worst < 0.05


def test_action_planes_agree_with_encode_action():
    rng = np.random.default_rng(1)
    acts = np.stack([rng.integers(0, SCREEN, 12), rng.integers(0, SCREEN, 12), rng.integers(0, 2, 12)], 1)
    planes = action_planes(torch.from_numpy(acts).to(torch.int16))
    assert planes.shape == (12, 2, LATENT, LATENT) and planes.dtype == torch.float32
    ref = np.stack([encode_action(*map(int, a)).transpose(2, 0, 1) for a in acts])
    np.testing.assert_allclose(planes.numpy(), ref, atol=1e-6)
    seq = action_planes(torch.from_numpy(acts).reshape(3, 4, 3))
    assert seq.shape == (3, 4, 2, LATENT, LATENT)
    np.testing.assert_allclose(seq.reshape(12, 2, LATENT, LATENT).numpy(), ref, atol=1e-6)
    pair = pair_planes(torch.from_numpy(acts[:6]), torch.from_numpy(acts[6:]))
    assert pair.shape == (6, 4, LATENT, LATENT)
    np.testing.assert_allclose(pair[:, 2:].numpy(), ref[6:], atol=1e-6)
    with pytest.raises(ValueError):
        action_planes(torch.zeros(4, 2))


def _pixels(geometry: torch.Tensor) -> np.ndarray:
    """(16, 56, 56) stroke geometry -> (224, 224) in screen layout."""
    return geometry.view(4, 4, LATENT, LATENT).permute(2, 0, 3, 1).reshape(SCREEN, SCREEN).numpy()


@pytest.mark.parametrize("size", [3, 10])
def test_stroke_geometry_marks_the_pixels_minipaint_paints(size):
    from infinipaint.minipaint.layout import LAYOUT

    app = Minipaint()
    app.reset()
    x, y = LAYOUT.slider_point(size)
    app.step((x, y, 1))
    blank = app.step((x, y, 0))  # brush `size` selected, nothing painted
    app.step((60, 100, 1))  # a press paints a dot
    painted = (app.step((97, 130, 1)) != blank).any(-1)  # and the drag a segment from it
    near = _pixels(stroke_geometry(torch.tensor([[60, 100, 1]]), torch.tensor([[97, 130, 1]]))[0])
    footprint = near >= 1 - size / GEOMETRY_REACH
    assert (painted & footprint).sum() / (painted | footprint).sum() > 0.85
    # a press (the previous step up) marks a disc around the cursor only
    press = _pixels(stroke_geometry(torch.tensor([[60, 100, 0]]), torch.tensor([[97, 130, 1]]))[0])
    ys, xs = np.nonzero(press > 0)
    assert press[130, 97] == 1 and max(abs(ys - 130).max(), abs(xs - 97).max()) <= GEOMETRY_REACH
    with pytest.raises(ValueError):
        stroke_geometry(torch.zeros(2, 3), torch.zeros(3, 3))


def test_brush_sizes_table_is_minipaints_disc_for_every_size():
    from infinipaint.minipaint import LAYOUT, brush_sizes_table

    table = brush_sizes_table()
    reach = max(LAYOUT.sizes)
    assert table.shape == (2 * reach + 1, 2 * reach + 1)
    for size in (1, 6, 10):  # pygame's disc of radius r spans [-r, r - 1]: off-centre by half a pixel
        ys, xs = np.nonzero(table <= size)
        assert (xs.min() - reach, xs.max() - reach, ys.min() - reach, ys.max() - reach) == (-size, size - 1, -size, size - 1)
    assert table[reach, reach] == 1 and table[0, 0] == reach + 1


@pytest.mark.parametrize("size", [1, 4, 6, 10])
def test_brush_footprint_gives_exactly_the_pixels_minipaint_paints(size):
    from infinipaint.minipaint.layout import LAYOUT

    rng = np.random.default_rng(size)
    canvas = np.zeros((SCREEN, SCREEN), dtype=bool)
    cx, cy, cw, ch = LAYOUT.rect("canvas")
    canvas[cy:cy + ch, cx:cx + cw] = True
    threshold = (len(LAYOUT.sizes) + 1 - size) / len(LAYOUT.sizes) - 1e-6
    app = Minipaint()
    for _ in range(12):
        app.reset()
        x, y = LAYOUT.slider_point(size)
        app.step((x, y, 1))
        blank = app.step((x, y, 0))
        x0, y0 = (int(v) for v in rng.integers(cy + 4, SCREEN - 4, 2))
        x1, y1 = (int(np.clip(v + d, cy, SCREEN - 1)) for v, d in zip((x0, y0), rng.integers(-12, 13, 2)))
        press = (app.step((x0, y0, 1)) != blank).any(-1)
        both = (app.step((x1, y1, 1)) != blank).any(-1)
        dot = _pixels(brush_footprint(torch.tensor([[x0, y0, 0]]), torch.tensor([[x0, y0, 1]]))[0]) >= threshold
        seg = _pixels(brush_footprint(torch.tensor([[x0, y0, 1]]), torch.tensor([[x1, y1, 1]]))[0]) >= threshold
        np.testing.assert_array_equal(dot & canvas, press)
        np.testing.assert_array_equal((dot | seg) & canvas, both)


def test_brush_footprint_batches_long_and_short_strokes_alike():
    prev = torch.tensor([[20, 60, 1], [100, 100, 1], [100, 100, 0]])
    nxt = torch.tensor([[200, 210, 1], [105, 96, 1], [30, 30, 1]])
    together = brush_footprint(prev, nxt)
    alone = torch.cat([brush_footprint(prev[i:i + 1], nxt[i:i + 1]) for i in range(3)])
    assert torch.equal(together, alone)  # a long drag widens the window for the batch, changes nothing
    long = _pixels(together[0])
    assert long[60, 20] == 1 and long[210, 200] == 1 and long[135, 110] == 1 and long[60, 200] == 0
    press = _pixels(together[2])
    ys, xs = np.nonzero(press)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (20, 39, 20, 39)  # the largest disc, at the cursor
    assert together.min() == 0 and together.max() == 1
    with pytest.raises(ValueError):
        brush_footprint(torch.zeros(2, 3), torch.zeros(3, 3))
