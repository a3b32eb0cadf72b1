"""The toolbar head: recorded toolbar codes per selected state, read back by nearest match, and a
classifier of the next selection that learns Minipaint's controls."""

import dataclasses

import numpy as np
import pytest
import torch

from infinipaint.actions import RESET_ACTION
from infinipaint.minipaint import LAYOUT, Minipaint
from infinipaint.minipaint.app import MinipaintState
from infinipaint.models.dynamics import DYNAMICS_PRESETS, LatentCNN
from infinipaint.models.toolbar import STATES, ToolbarHead, state_index, state_parts
from infinipaint.models.vae import VAE, VAEConfig, to_codes
from infinipaint.models.world_model import WorldModel
from infinipaint.training import toolbar as fitting

ROWS = 8


def selection(app: Minipaint) -> tuple[int, int, int]:
    s = app.state
    return int(s.tool == "eraser"), s.color, LAYOUT.sizes.index(s.size)


def scripted_episodes(episodes: int, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Episodes of a cursor that mostly roams the toolbar, jumping to controls (near their centres,
    as the agents press them), pressing, dragging and releasing, replayed in Minipaint: (actions
    (N, 3), selection labels (N, 3), episode starts), as a latent cache stores them."""
    rng = np.random.default_rng(seed)
    actions, labels, starts = [], [], [0]
    for _ in range(episodes):
        app = Minipaint()
        app.reset()
        actions.append(RESET_ACTION)
        labels.append(selection(app))
        x, y, down = 112, 112, 0
        for _ in range(steps):
            r = rng.random()
            if r < 0.4 and not down:  # jump (the button up) to a control, or anywhere
                cx, cy = (LAYOUT.center(LAYOUT.controls[rng.integers(len(LAYOUT.controls))]) if r < 0.3
                          else (rng.integers(0, 224), rng.integers(0, 224)))
                x, y = int(np.clip(cx + rng.integers(-4, 5), 0, 223)), int(np.clip(cy + rng.integers(-4, 5), 0, 223))
            else:  # move a little, as a hand drags
                x, y = int(np.clip(x + rng.integers(-8, 9), 0, 223)), int(np.clip(y + rng.integers(-3, 4), 0, 223))
            down = int(rng.random() < (0.7 if down else 0.4))
            app.step((x, y, down))
            actions.append((x, y, down))
            labels.append(selection(app))
        starts.append(len(actions))
    return np.array(actions), np.array(labels), starts


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A head fitted on scripted episodes, and held-out transitions."""
    torch.manual_seed(0)
    head = ToolbarHead(latent_channels=4, rows=ROWS)
    train = fitting.transitions_of(*scripted_episodes(40, 400, seed=0))
    held_out = fitting.transitions_of(*scripted_episodes(10, 400, seed=1))
    fitting.fit(head, train, None, tmp_path_factory.mktemp("toolbar"), steps=800, batch=256, lr=1e-2, progress=False)
    return head.eval(), held_out


def test_state_index_round_trip():
    index = torch.arange(STATES)
    assert torch.equal(state_index(state_parts(index)), index)
    assert state_index(torch.tensor([1, 5, 9])) == STATES - 1


def test_read_finds_the_nearest_recorded_toolbar():
    torch.manual_seed(0)
    head = ToolbarHead(latent_channels=4, rows=ROWS)
    assert not head.ready
    codes = torch.randint(0, 5, (STATES, 4, ROWS, 56), dtype=torch.uint8)
    parts = state_parts(torch.arange(STATES))
    assert head.fill(codes, parts) == 0 and head.ready
    assert torch.equal(head.read(codes), torch.arange(STATES))
    damaged = codes.clone()
    damaged[:, :, :2, :3] = 0  # a few wrong codes: still the nearest
    assert torch.equal(head.read(damaged), torch.arange(STATES))
    assert torch.equal(head.codes(torch.tensor([7])), codes[7:8])
    assert head.fill(codes[:1] + 1, parts[:1]) == 1  # a second toolbar for one state is reported


def test_the_classifier_learns_minipaints_controls(fitted):
    head, held_out = fitted
    metrics = fitting.accuracy(head, held_out)
    assert metrics["changes_n"] > 100
    assert metrics["wrong_changes"] < 0.15 and metrics["wrong"] < 0.03, metrics
    # an unfitted head keeps every selection: wrong on every change
    assert fitting.accuracy(ToolbarHead(latent_channels=4, rows=ROWS), held_out)["wrong_changes"] == 1.0


def test_the_world_model_writes_the_toolbar_of_the_selected_state(fitted):
    """Steps that press controls give exactly the codes of Minipaint's own toolbar; a stroke on the
    canvas leaves them alone."""
    torch.manual_seed(0)
    vae = VAE(VAEConfig(preset="tiny", channels=(16,), blocks=(1,), train_crop=0, encoder_kernel=1,
                        latent="fsq", latent_channels=4)).eval()
    config = dataclasses.replace(DYNAMICS_PRESETS["tiny"], latent_channels=4, head="levels",
                                 levels=vae.config.fsq_levels, toolbar_head=True)
    net = LatentCNN(config).eval()
    net.toolbar.load_state_dict({**fitted[0].state_dict(), "table": net.toolbar.table, "seen": net.toolbar.seen})
    wm = WorldModel(vae, net, bf16=False, window=0)
    assert net.next_toolbar(wm.encode(Minipaint().reset()[None]), torch.tensor([RESET_ACTION]),
                            torch.tensor([(5, 5, 1)])) is None  # an empty table: the levels head's toolbar
    app = Minipaint()
    for tool in ("pen", "eraser"):  # the table: every state's toolbar, encoded
        for colour in range(6):
            frames = np.stack([app.reset(MinipaintState(tool=tool, color=colour, size=s)) for s in LAYOUT.sizes])
            parts = torch.tensor([[int(tool == "eraser"), colour, i] for i in range(len(LAYOUT.sizes))])
            net.toolbar.fill(to_codes(wm.encode(frames)[:, :, :ROWS], config.levels), parts)
    assert net.toolbar.seen.all()
    app.reset()
    wm.reset(app.frame())
    script = [(*LAYOUT.center("color3"), 1), (0, 0, 0), (*LAYOUT.center("eraser"), 1), (0, 0, 0),
              (*LAYOUT.slider_point(7), 1), (LAYOUT.slider_x(9), LAYOUT.center("slider")[1], 1), (150, 150, 0),
              (150, 150, 1), (160, 155, 1)]
    for action in script:
        truth = app.step(action)
        wm.step(action)
        assert torch.equal(to_codes(wm.latent[:, :, :ROWS], config.levels),
                           to_codes(wm.encode(truth[None])[:, :, :ROWS], config.levels)), action
    assert (app.state.tool, app.state.color, app.state.size) == ("eraser", 3, 9)


def test_initial_state_adds_or_drops_the_toolbar_head():
    """--init-from a network without the head gives an empty table (the levels head's toolbar);
    a network without the head started from one with it drops it."""
    from infinipaint.models.dynamics import initial_state

    plain = dataclasses.replace(DYNAMICS_PRESETS["tiny"], head="levels", levels=5)
    with_head = dataclasses.replace(plain, toolbar_head=True)
    source = LatentCNN(plain).state_dict()
    model = LatentCNN(with_head)
    state = initial_state(model, source, plain)
    model.load_state_dict(state, strict=True)
    assert not model.toolbar.ready
    assert all(torch.equal(state[k], v) for k, v in source.items())
    back = LatentCNN(plain)
    back.load_state_dict(initial_state(back, model.state_dict(), with_head), strict=True)
    with pytest.raises(ValueError, match="toolbar_head needs head 'levels'"):
        dataclasses.replace(DYNAMICS_PRESETS["tiny"], toolbar_head=True)
