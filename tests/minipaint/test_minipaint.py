import hashlib
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infinipaint.minipaint import COLORS, LAYOUT, LAYOUT_VERSION, LAYOUTS, Minipaint, MinipaintState, get_layout
from infinipaint.minipaint.layout import REGIONS, WHITE

from .golden_script import golden_script

# sha256 over the reset frame and every frame of golden_script(), pygame-ce 2.5.8.
GOLDEN_SHA256 = "0805a1140a52a6778d347188976ab4b0d9158f00d18ed79ff68807dcb275cb49"
PALETTE = {tuple(c) for c in COLORS} | {WHITE}


def click(app, name):
    x, y = LAYOUT.center(name)
    app.step((x, y, 1))
    return app.step((x, y, 0))


def region(frame, name, layout=LAYOUT):
    x, y, w, h = layout.rect(name)
    return frame[y : y + h, x : x + w]


def canvas_colors(frame, layout=LAYOUT):
    return {tuple(c) for c in region(frame, "canvas", layout).reshape(-1, 3)}


def test_golden_frames():
    app = Minipaint()
    h = hashlib.sha256(app.reset().tobytes())
    for action in golden_script():
        h.update(app.step(action).tobytes())
    assert h.hexdigest() == GOLDEN_SHA256, "rasterisation changed: check the pygame-ce pin"


def test_frame_is_a_fresh_copy():
    app = Minipaint()
    f = app.reset()
    assert f.shape == (224, 224, 3) and f.dtype == np.uint8 and f.flags.writeable
    f[:] = 7
    assert not np.array_equal(app.frame(), f)
    g = app.step((5, 5, 0))
    g[:] = 9
    assert not np.array_equal(app.frame(), g)


def test_reset_frame_shows_default_state():
    f = Minipaint().reset()
    assert canvas_colors(f) == {WHITE}
    assert not np.array_equal(region(f, "pen"), region(f, "eraser"))


@pytest.mark.parametrize("name", [f"color{i}" for i in range(6)])
def test_color_press_selects_and_pen_draws_it(name):
    app = Minipaint()
    before = app.frame()
    after = click(app, name)
    i = int(name[5:])
    assert app.state.color == i
    if i != 0:  # colour 0 is the default: nothing to change
        assert not np.array_equal(region(before, "toolbar"), region(after, "toolbar"))
    f = app.step((100, 120, 1))
    assert tuple(f[120, 100]) == COLORS[i]


def test_tool_buttons_and_eraser_paints_white():
    app = Minipaint()
    app.step((60, 100, 1))
    f = app.step((160, 100, 1))
    app.step((160, 100, 0))
    assert tuple(f[100, 110]) == COLORS[0]
    f = click(app, "eraser")
    assert app.state.tool == "eraser"
    assert not np.array_equal(region(f, "eraser"), region(Minipaint().reset(), "eraser"))
    app.step((110, 80, 1))
    f = app.step((110, 140, 1))
    assert tuple(f[100, 110]) == WHITE and tuple(f[100, 130]) == COLORS[0]
    click(app, "pen")  # still held down from the stroke: a drag onto the button does nothing
    assert app.state.tool == "eraser"
    app.step((110, 140, 0))
    click(app, "pen")
    assert app.state.tool == "pen"


def test_slider_press_and_drag_keep_moving_the_knob():
    app = Minipaint()
    for size in LAYOUT.sizes:
        x, y = LAYOUT.slider_point(size)
        app.step((x, y, 1))
        assert app.state.size == size
        app.step((x, y, 0))
    x, y = LAYOUT.slider_point(LAYOUT.sizes[0])
    app.step((x, y, 1))
    app.step((x, 120, 1))  # leaves the slider vertically: still dragging the knob
    app.step((223, 120, 1))  # past the track: clamps to the largest size
    assert app.state.size == LAYOUT.sizes[-1]
    f = app.step((223, 120, 1))
    assert canvas_colors(f) == {WHITE}  # the slider drag never paints
    app.step((223, 120, 0))
    app.step((100, 100, 1))
    assert app.state.size == LAYOUT.sizes[-1]


def test_every_state_is_visible_and_distinct():
    seen = set()
    app = Minipaint()
    for tool in ("pen", "eraser"):
        for color in range(len(COLORS)):
            for size in LAYOUT.sizes:
                f = app.reset(MinipaintState(tool=tool, color=color, size=size))
                seen.add(region(f, "toolbar").tobytes())
    assert len(seen) == 2 * len(COLORS) * len(LAYOUT.sizes)


def test_brush_size_sets_the_dot():
    app = Minipaint()
    widths = []
    for size in LAYOUT.sizes:
        app.reset(MinipaintState(size=size))
        f = app.step((112, 128, 1))
        widths.append(int((f[128] != 255).any(axis=1).sum()))
    assert widths == [2 * s for s in LAYOUT.sizes]  # pygame discs span 2r pixels


def test_drag_from_a_button_does_nothing():
    app = Minipaint()
    before = click(app, "color2")
    x, y = LAYOUT.center("color2")
    app.step((x, y, 1))
    for yy in range(y, 200, 10):
        f = app.step((x, yy, 1))
    assert np.array_equal(f, before)
    x, y = 40, 1  # dead space in the toolbar, above the buttons
    assert LAYOUT.control_at(x, y) is None
    app.step((x, y, 0))
    app.step((x, y, 1))
    assert np.array_equal(app.step((x, 100, 1)), before)


def test_hover_and_release_leave_the_frame():
    app = Minipaint()
    app.step((50, 80, 1))
    f = app.step((90, 80, 1))
    for a in [(90, 80, 0), (120, 150, 0), (*LAYOUT.center("eraser"), 0), (3, 200, 0)]:
        assert np.array_equal(app.step(a), f)
    assert app.state.tool == "pen"


def test_strokes_are_clipped_to_the_canvas():
    app = Minipaint()
    toolbar = region(app.frame(), "toolbar").copy()
    app.reset(MinipaintState(size=LAYOUT.sizes[-1]))
    toolbar = region(app.frame(), "toolbar").copy()
    app.step((100, 33, 1))
    app.step((150, 34, 1))
    f = app.step((200, 33, 1))
    assert np.array_equal(region(f, "toolbar"), toolbar)
    assert (region(f, "canvas") != 255).any()


BAD_ACTIONS = [
    (224, 10, 0), (-1, 10, 0), (10, 224, 1), (10, 10, 2), (10, 10, -1),
    (10.5, 10, 0), (float("nan"), 10, 0), (10, float("inf"), 1), ("10", 10, 0), (None, 1, 0),
    (10, 10), (10, 10, 1, 0), (), "abc", 5, None,
]


@pytest.mark.parametrize("action", BAD_ACTIONS, ids=repr)
def test_bad_actions_raise_and_leave_state(action):
    app = Minipaint()
    app.step((50, 80, 1))
    state, frame = app.state, app.frame()
    with pytest.raises(ValueError):
        app.step(action)
    assert app.state == state and np.array_equal(app.frame(), frame)
    app.step((60, 80, 1))  # still drags from where it was
    assert (region(app.frame(), "canvas") != 255).any()


def test_clip_option_clips():
    app = Minipaint()
    app.step((-20, 500, 7), clip=True)
    assert app.state.cursor == (0, 223) and app.state.down
    app.step((300.4, 50.6, 0), clip=True)
    assert app.state.cursor == (223, 51) and not app.state.down
    with pytest.raises(ValueError):
        app.step((float("nan"), 1, 0), clip=True)


def test_snapshot_restore():
    app = Minipaint()
    app.step((50, 80, 1))
    snap = app.snapshot()
    expected = [app.step(a) for a in [(90, 80, 1), (90, 120, 1), (90, 120, 0)]]
    click(app, "eraser")
    app.step((10, 100, 1))
    app.restore(snap)
    assert app.state == snap.state
    assert all(np.array_equal(app.step(a), e) for a, e in zip([(90, 80, 1), (90, 120, 1), (90, 120, 0)], expected))


actions = st.tuples(st.integers(0, 223), st.integers(0, 223), st.integers(0, 1))
# Bias towards the toolbar so controls get pressed often.
toolbar_actions = st.tuples(st.integers(0, 223), st.integers(0, 40), st.integers(0, 1))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(actions, toolbar_actions), min_size=1, max_size=300))
def test_random_streams(stream):
    a, b = Minipaint(), Minipaint()
    ref = Minipaint()
    for action in stream:
        fa, fb = a.step(action), b.step(action)
        assert np.array_equal(fa, fb)
    s = a.state
    assert s.tool in ("pen", "eraser") and 0 <= s.color < len(COLORS) and s.size in LAYOUT.sizes
    assert s.cursor == stream[-1][:2] and s.down == bool(stream[-1][2])
    # The toolbar is a function of (tool, colour, size) alone, and the canvas is never anti-aliased.
    truth = ref.reset(MinipaintState(tool=s.tool, color=s.color, size=s.size))
    assert np.array_equal(region(fa, "toolbar"), region(truth, "toolbar"))
    assert canvas_colors(fa) <= PALETTE


def check_registered_env(env_id: str, **kwargs):
    """gymnasium's check_env on the env `gym.make(env_id)` builds, as a user gets it: its spec is
    there, so the checker also makes the env anew in every declared render mode and renders it (a
    warning, such as "not able to test alternative render modes", fails). Returns the env."""
    env = gym.make(env_id, **kwargs)
    assert env.unwrapped.spec is not None and env.unwrapped.spec.id == env_id
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
    return env


def test_gymnasium_env():
    env = check_registered_env("Minipaint-v0", render_mode="rgb_array")
    assert env.metadata["render_modes"] == ["rgb_array", "human"]
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(np.array([100, 120, 1]))
    assert obs.shape == (224, 224, 3) and reward == 0.0 and not terminated and not truncated
    assert np.array_equal(env.render(), obs)


def test_gymnasium_human_mode_headless():
    env = gym.make("Minipaint-v0", render_mode="human", max_steps=2)
    env.reset()
    env.step(np.array([100, 120, 1]))
    _, _, _, truncated, _ = env.step(np.array([110, 120, 1]))
    assert truncated
    env.close()


# ---------------------------------------------------------------------------- the layouts
COLUMN = LAYOUTS["column"]
# sha256 over the reset frame and every frame of golden_script(COLUMN) on "column", pygame-ce 2.5.8.
COLUMN_GOLDEN_SHA256 = "dcbe86e06a560da2cd78a0071bdfc6c32d05057fa7450b3b7e8d2a82dcfc0e6c"


def test_golden_frames_column():
    app = Minipaint("column")
    h = hashlib.sha256(app.reset().tobytes())
    for action in golden_script(COLUMN):
        h.update(app.step(action).tobytes())
    assert h.hexdigest() == COLUMN_GOLDEN_SHA256, "rasterisation or the column layout changed"


def test_layouts_by_name():
    assert LAYOUT is LAYOUTS["default"] and COLORS == LAYOUT.colors and LAYOUT_VERSION == LAYOUT.version == 2
    assert Minipaint().layout is LAYOUT and Minipaint("column").layout is COLUMN
    assert Minipaint(COLUMN).layout is COLUMN and get_layout(COLUMN) is COLUMN
    with pytest.raises(ValueError, match="unknown layout 'nope'; known: default, column"):
        Minipaint("nope")
    with pytest.raises(ValueError, match="not one of layout 'column'"):
        Minipaint("column").reset(MinipaintState(size=1))  # radius 1 is not on the column's slider


def _gap(a, b):
    """Chebyshev gap in px between two rectangles (0: they touch or overlap)."""
    (ax, ay, aw, ah), (bx, by, bw, bh) = a, b
    return max(bx - (ax + aw), ax - (bx + bw), by - (ay + ah), ay - (by + bh), 0)


def _extent(layout, names):
    """Width and height of the bounding box of some regions."""
    rects = [layout.rect(n) for n in names]
    x0, y0 = min(r[0] for r in rects), min(r[1] for r in rects)
    return max(r[0] + r[2] for r in rects) - x0, max(r[1] + r[3] for r in rects) - y0


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=list(LAYOUTS))
def test_layout_geometry(layout):
    assert set(layout.names) == set(REGIONS) and layout.controls == REGIONS[2:]
    for name in layout.names:
        x, y, w, h = layout.rect(name)
        assert 0 <= x and x + w <= 224 and 0 <= y and y + h <= 224 and w > 0 and h > 0, name
    assert layout.mask("toolbar").sum() + layout.mask("canvas").sum() == 224 * 224  # they tile the screen
    assert not (layout.mask("toolbar") & layout.mask("canvas")).any()
    for i, a in enumerate(layout.controls):
        assert (layout.mask(a) <= layout.mask("toolbar")).all(), a
        for b in layout.controls[i + 1 :]:
            assert _gap(layout.rect(a), layout.rect(b)) >= 2, (a, b)  # apart, room for a selection ring
    # Controls whose state interacts sit close together (within ~56 px).
    assert max(_extent(layout, ["pen", "eraser"])) <= 56
    assert max(_extent(layout, [f"color{i}" for i in range(6)])) <= 56
    assert max(_extent(layout, ["slider"])) <= 56  # the knob's whole travel, from any press on the track
    for size in layout.sizes:
        x, y = layout.slider_point(size)
        assert layout.control_at(x, y) == "slider" and layout.size_at(x, y) == size


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=list(LAYOUTS))
def test_layout_colours_are_far_apart(layout):
    rgb = np.array(layout.colors, float)
    d = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1)
    assert len(layout.colors) == 6 and d[np.triu_indices(6, 1)].min() > 120
    assert np.linalg.norm(rgb - WHITE, axis=-1).min() > 120


def test_column_is_another_arrangement_palette_and_brush_range():
    assert not set(COLUMN.colors) & set(LAYOUT.colors)
    assert COLUMN.sizes != LAYOUT.sizes and COLUMN.slider_axis != LAYOUT.slider_axis
    assert all(COLUMN.rect(n) != LAYOUT.rect(n) for n in REGIONS)
    tx, _, tw, _ = COLUMN.rect("toolbar")
    assert tx + tw == 224 and COLUMN.rect("canvas")[:2] == (0, 0)  # a column on the right edge


@pytest.mark.parametrize("name", [c for c in COLUMN.controls if c != "slider"])
def test_column_press_on_each_button_selects_it(name):
    app = Minipaint("column")
    if name == "pen":
        click_on(app, COLUMN, "eraser")
    before = app.frame()
    click_on(app, COLUMN, name)
    if name.startswith("color"):
        assert app.state.color == int(name[5:])
        f = app.step((100, 120, 1))
        assert tuple(f[120, 100]) == COLUMN.colors[app.state.color]
    else:
        assert app.state.tool == name
    if name != "color0":  # colour 0 is selected after a reset: nothing to change
        assert not np.array_equal(region(before, "toolbar", COLUMN), region(app.frame(), "toolbar", COLUMN))


def test_column_slider_press_and_drag_keep_moving_the_knob():
    app = Minipaint("column")
    seen = set()
    for size in COLUMN.sizes:
        x, y = COLUMN.slider_point(size)
        seen.add(region(app.step((x, y, 1)), "slider", COLUMN).tobytes())  # the knob shows the size
        assert app.state.size == size
        app.step((x, y, 0))
    assert len(seen) == len(COLUMN.sizes)
    x, y = COLUMN.slider_point(COLUMN.sizes[0])
    app.step((x, y, 1))
    app.step((100, y, 1))  # leaves the slider onto the canvas: still dragging the knob
    f = app.step((100, 223, 1))  # past the end of the track: the largest size
    assert app.state.size == COLUMN.sizes[-1] and canvas_colors(f, COLUMN) == {WHITE}


def test_column_drag_from_a_button_paints_nothing():
    app = Minipaint("column")
    for name in [c for c in COLUMN.controls if c != "slider"]:
        x, y = COLUMN.center(name)
        before = app.step((x, y, 1))
        for xx in range(x, 0, -15):  # leftwards across the canvas
            assert np.array_equal(app.step((xx, y + (x - xx) // 3, 1)), before), name
        app.step((0, y, 0))
    assert canvas_colors(app.frame(), COLUMN) == {WHITE}


def test_column_every_state_is_visible_and_distinct():
    app, seen = Minipaint("column"), set()
    for tool in ("pen", "eraser"):
        for color in range(6):
            for size in COLUMN.sizes:
                seen.add(region(app.reset(MinipaintState(tool=tool, color=color, size=size)), "toolbar", COLUMN).tobytes())
    assert len(seen) == 2 * 6 * len(COLUMN.sizes)


def test_column_brush_size_sets_the_dot():
    app, widths = Minipaint("column"), []
    for size in COLUMN.sizes:
        app.reset(MinipaintState(size=size))
        widths.append(int((region(app.step((92, 112, 1)), "canvas", COLUMN)[112] != 255).any(axis=1).sum()))
    assert widths == [2 * s for s in COLUMN.sizes]


def test_gymnasium_env_on_the_column_layout():
    env = check_registered_env("Minipaint-v0", layout="column")
    obs, _ = env.reset(seed=0)
    assert np.array_equal(obs, Minipaint("column").reset())
    assert env.unwrapped.app.layout is COLUMN


def click_on(app, layout, name):
    x, y = layout.center(name)
    app.step((x, y, 1))
    return app.step((x, y, 0))
