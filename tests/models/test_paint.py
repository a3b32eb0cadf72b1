"""The paint head: canvas cells it paints are recoloured pixel by pixel and encoded again."""

import dataclasses

import numpy as np
import pytest
import torch

from infinipaint.actions import RESET_ACTION, cell_pixels, cell_planes
from infinipaint.errors import CheckpointError
from infinipaint.minipaint import COLORS, LAYOUT, Minipaint
from infinipaint.models.dynamics import BRUSH_SIZES, DYNAMICS_PRESETS, DynamicsConfig, LatentCNN
from infinipaint.models.vae import VAE, VAEConfig, palette_of
from infinipaint.models.world_model import WorldModel

PRESS, DRAG = (100, 100, 1), (111, 105, 1)


@pytest.fixture(scope="module")
def palette(minipaint_frames):
    return palette_of(minipaint_frames)


@pytest.fixture(scope="module")
def vae(palette):
    """A tiny untrained VAE with cell-local FSQ codes and a palette decoder."""
    torch.manual_seed(0)
    return VAE(VAEConfig(preset="tiny", channels=(16,), blocks=(1,), train_crop=0, encoder_kernel=1,
                         latent="fsq", output="palette", palette=palette)).eval()


def paint_config(palette, **changes):
    return dataclasses.replace(DYNAMICS_PRESETS["tiny"], head="levels", levels=5, geometry=True,
                               geometry_kind="brush", paint_palette=palette, **changes)


def exact_painter(palette, size, rgb, context=0):
    """A dynamics net whose paint head is set by hand to paint with brush `size` in colour `rgb`
    wherever the footprint says so (and whose levels head, untrained, keeps every code). With a
    toolbar context, size and colour come from the head's global part."""
    net = LatentCNN(paint_config(palette, context=context)).eval()
    with torch.no_grad():
        net.paint_head.bias.zero_()  # gate, brush sizes, colours
        net.paint_head.bias[0] = 20.0
        bias = net.paint_global.bias if context else net.paint_head.bias[1:]  # brush sizes, colours
        bias[size - 1] = 30.0
        bias[BRUSH_SIZES + palette.index(rgb)] = 30.0
    return net


def drag_frames():
    """Minipaint's frames before and after one pen drag (default size and colour)."""
    app = Minipaint()
    app.reset()
    before = app.step(PRESS)
    after = app.step(DRAG)
    assert (before != after).any()
    return before, after, app.state


def test_cell_planes_round_trip():
    x = torch.arange(2 * 8 * 12).view(2, 8, 12)
    planes = cell_planes(x)
    assert planes.shape == (2, 16, 2, 3)
    assert planes[1, 4 * 2 + 3, 1, 2] == x[1, 4 + 2, 8 + 3]  # plane 4 dy + dx holds pixel (4 i + dy, 4 j + dx)
    assert torch.equal(cell_pixels(planes), x)


def test_config_checks(palette):
    assert BRUSH_SIZES == len(LAYOUT.sizes)  # the sizes the footprint encodes
    with pytest.raises(ValueError, match="paint head needs"):
        dataclasses.replace(DYNAMICS_PRESETS["tiny"], paint_palette=palette)
    with pytest.raises(ValueError, match="RGB triples"):
        paint_config(((1, 2, 3), (4, 5)))
    # JSON round trip (lists back to tuples)
    config = paint_config(palette)
    assert DynamicsConfig(**{**config.to_dict(), "paint_palette": [list(c) for c in palette]}) == config


def test_selection_loss_reads_the_global_logits(palette, vae):
    """`select_weight`: the global logits are scored against what is selected; the eraser's colour
    is white, and a net set to pen size 3 in colour 0 gets every label of that state right."""
    with pytest.raises(ValueError, match="toolbar context"):
        paint_config(palette, select_weight=1.0)
    before, _, state = drag_frames()
    net = exact_painter(palette, state.size, COLORS[state.color], context=16)
    z = vae.encode(torch.from_numpy(before)[None].permute(0, 3, 1, 2).float() / 255)
    net.features(net.normalize(z), net.action_input(torch.tensor([PRESS]), torch.tensor([DRAG])).float())
    size = LAYOUT.sizes.index(state.size)
    right = torch.tensor([[0, state.color, size]])
    loss, logs = net.selection_loss(right)
    assert logs["select_wrong_size"] == 0 and logs["select_wrong_colour"] == 0 and float(loss.detach()) < 1e-3
    _, logs = net.selection_loss(torch.tensor([[1, state.color, (size + 1) % BRUSH_SIZES]]))  # eraser: white
    assert logs["select_wrong_size"] == 1 and logs["select_wrong_colour"] == 1
    loss, _ = net.selection_loss(torch.tensor([[1, 0, 0]]))
    loss.backward()
    assert net.paint_global.weight.grad.abs().sum() > 0 and net.context_net[0].weight.grad is not None


def test_palette_cells_index_each_pixel(palette, minipaint_frames):
    net = LatentCNN(paint_config(palette))
    frames = torch.from_numpy(minipaint_frames[:3])
    cells = net.palette_cells(frames)
    assert cells.shape == (3, 16, 56, 56) and cells.min() >= 0
    rgb = torch.tensor(palette, dtype=torch.uint8)[cell_pixels(cells)]
    assert torch.equal(rgb, frames)
    foreign = frames.clone()
    foreign[0, 50, 60] = torch.tensor([1, 2, 3], dtype=torch.uint8)
    assert net.palette_cells(foreign)[0, 4 * 2 + 0, 12, 15] == -1  # pixel (50, 60): cell (12, 15), plane 8


@pytest.mark.parametrize("context", [0, 8])
def test_painted_cells_get_the_codes_of_minipaints_pixels(palette, vae, context):
    before, after, state = drag_frames()
    net = exact_painter(palette, state.size, COLORS[state.color], context)
    wm = WorldModel(vae, net, bf16=False, window=0)
    z = wm.encode(before[None])
    nxt = wm.advance(z, torch.tensor([PRESS]), torch.tensor([DRAG]), before[None])
    truth = wm.encode(after[None])
    changed = (truth != z).any(dim=1)
    assert changed.sum() >= 4  # the stroke repainted cells: their codes changed ...
    assert torch.equal(nxt, truth)  # ... to exactly those of Minipaint's next frame, and nothing else moved
    # Without the frames, the cells are decoded from z (with the cells around them they depend on).
    shown = wm.decode(z)
    assert torch.equal(wm.advance(z, torch.tensor([PRESS]), torch.tensor([DRAG])),
                       wm.advance(z, torch.tensor([PRESS]), torch.tensor([DRAG]), shown))
    # The same step on a window around the cursor (the toolbar strip comes from the whole map).
    windowed = WorldModel(vae, net, bf16=False, window=24)
    assert torch.equal(windowed.advance(z, torch.tensor([PRESS]), torch.tensor([DRAG]), before[None]), truth)


def test_the_toolbar_is_never_painted(palette, vae):
    app = Minipaint()
    first = app.reset()
    net = exact_painter(palette, 10, palette[2])
    wm = WorldModel(vae, net, bf16=False, window=0)
    z = wm.encode(first[None])
    press = (*LAYOUT.center("color3"), 1)  # a press on a swatch: a size-10 footprint reaches the canvas
    nxt = wm.advance(z, torch.tensor([RESET_ACTION]), torch.tensor([press]), first[None])
    rows = net.config.context_rows
    assert torch.equal(nxt[:, :, :rows], z[:, :, :rows])  # toolbar cells: the levels head's (unchanged)
    assert not torch.equal(nxt[:, :, rows:], z[:, :, rows:])  # the canvas cells below it were painted


def test_paint_loss_targets(palette, vae):
    before, after, state = drag_frames()
    batch = {"z": vae.encode(torch.from_numpy(np.stack([before, after])).permute(0, 3, 1, 2).float() / 255)[None],
             "actions": torch.tensor([[PRESS, DRAG]]), "frames": torch.from_numpy(np.stack([before, after]))[None]}
    exact = exact_painter(palette, state.size, COLORS[state.color])
    exact.train()
    _, logs = exact.loss(batch)
    assert logs["paint_wrong_changed"] == 0 and logs["paint_wrong_same"] == 0
    assert logs["paint_nll_near"] < 0.01  # logits 5 past the threshold at the least
    untrained = LatentCNN(paint_config(palette)).train()
    _, logs = untrained.loss(batch)
    assert logs["paint_wrong_changed"] == 1 and logs["paint_wrong_same"] == 0  # paints nothing yet
    wrong_colour = exact_painter(palette, state.size, palette[0]).train()
    _, logs = wrong_colour.loss(batch)
    assert logs["paint_wrong_changed"] == 1


def test_paint_only_trains_the_paint_head_and_its_reader_alone(palette, vae):
    """`paint_reader` + `paint_only`: the head reads the toolbar with its own copy of the context
    reader (started from the source's weights); training moves the head and that reader, never the
    trunk or the levels head, and skips the levels loss."""
    from infinipaint.models.dynamics import initial_state

    with pytest.raises(ValueError, match="paint_only needs paint_reader"):
        paint_config(palette, context=8, paint_only=True)
    with pytest.raises(ValueError, match="toolbar context"):
        paint_config(palette, paint_reader=True)
    source = LatentCNN(dataclasses.replace(paint_config(palette, context=8), paint_palette=()))
    net = LatentCNN(paint_config(palette, context=8, paint_reader=True, paint_only=True, select_weight=1.0))
    net.load_state_dict(initial_state(net, source.state_dict(), source.config))
    assert torch.equal(net.paint_reader[0].weight, source.context_net[0].weight)
    before, after, state = drag_frames()
    batch = {"z": vae.encode(torch.from_numpy(np.stack([before, after])).permute(0, 3, 1, 2).float() / 255)[None],
             "actions": torch.tensor([[PRESS, DRAG]]), "frames": torch.from_numpy(np.stack([before, after]))[None],
             "selected": torch.tensor([[[0, state.color, LAYOUT.sizes.index(state.size)]] * 2])}
    torch.nn.init.normal_(net.paint_global.weight, std=0.1)  # zero at the start: the reader's gradient too
    net.train()
    loss, logs = net.loss(batch)
    loss.backward()
    assert "ce_changed" not in logs and "select_ce" in logs and "paint_nll_near" in logs
    learned = {n for n, w in net.named_parameters() if w.grad is not None and w.grad.abs().sum() > 0}
    assert learned and all(n.startswith(("paint_head.", "paint_global.", "paint_reader.")) for n in learned)
    assert any(n.startswith("paint_reader.") for n in learned)


def test_a_foreign_palette_is_refused(palette, vae):
    other = tuple(reversed(palette))
    with pytest.raises(CheckpointError, match="palette"):
        WorldModel(vae, LatentCNN(paint_config(other)))



def test_the_canvas_changes_only_where_it_is_painted(palette, vae):
    """`paint_owns_canvas`: codes the levels head changes on the canvas are dropped where the paint
    head paints nothing (Minipaint's canvas changes only under the brush); the toolbar keeps them."""
    first = Minipaint().reset()
    net = exact_painter(palette, 3, palette[2])
    with torch.no_grad():
        net.paint_head.bias[0] = -100.0  # paints nothing
        net.head.bias.view(-1, 5)[:, 0] = 10.0  # every code jumps to level 0
    wm = WorldModel(vae, net, bf16=False, window=0)
    z = wm.encode(first[None])
    step = (torch.tensor([RESET_ACTION]), torch.tensor([(100, 100, 0)]))
    rows = net.config.context_rows
    nxt = wm.advance(z, *step, first[None])
    assert torch.equal(nxt[:, :, rows:], z[:, :, rows:]) and not torch.equal(nxt[:, :, :rows], z[:, :, :rows])
    net.config.paint_owns_canvas = False
    assert not torch.equal(wm.advance(z, *step, first[None])[:, :, rows:], z[:, :, rows:])
