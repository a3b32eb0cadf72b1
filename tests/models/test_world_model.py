import json
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import infinipaint.minipaint  # noqa: F401  (registers the envs)
from infinipaint.errors import CheckpointError
from infinipaint.models import vae as vae_files
from infinipaint.models.checkpoint import read_info, save_weights
from infinipaint.models.dynamics import DYNAMICS_PRESETS, LatentCNN
from infinipaint.models.vae import VAE, VAE_PRESETS
from infinipaint.models.world_model import WorldModel


def make_world_model_dir(path, seed=0):
    """A complete (untrained but non-trivial) tiny world-model directory, written by the real savers."""
    torch.manual_seed(seed)
    vae = VAE(VAE_PRESETS["tiny"])
    vae_files.save(vae, path)
    dyn = LatentCNN(DYNAMICS_PRESETS["tiny"])
    torch.nn.init.normal_(dyn.head.weight, std=0.05)  # a net that does change the latent
    sha = read_info(path, "vae")["weights"]["sha256"]
    save_weights(dyn, path, "dynamics", dyn.config.to_dict(), {"vae_sha256": sha})
    return path


@pytest.fixture(scope="module")
def wm_dir(tmp_path_factory):
    return make_world_model_dir(tmp_path_factory.mktemp("wm"))


ACTIONS = [(100, 100, 1), (110, 104, 1), (121, 108, 1), (121, 108, 0), (20, 15, 1), (20, 15, 0)]


def test_rollout_equals_repeated_step(wm_dir):
    wm = WorldModel.load(wm_dir, bf16=False)
    first = infinipaint.minipaint.Minipaint().reset()
    stepped = [wm.reset(first)]
    stepped += [wm.step(a) for a in ACTIONS]
    rolled = wm.rollout(first[None], np.array([ACTIONS]))
    assert rolled.shape == (1, len(ACTIONS), 224, 224, 3) and rolled.dtype == np.uint8
    assert np.array_equal(rolled[0], np.stack(stepped[1:]))  # same batch size: bit-identical
    # A larger batch may pick other convolution kernels: equal up to float rounding.
    batched = wm.rollout(np.stack([first, first]), np.array([ACTIONS, ACTIONS]))
    for b in range(2):
        diff = np.abs(batched[b].astype(int) - rolled[0].astype(int))
        assert diff.max() <= 2 and (diff > 0).mean() < 1e-3
    # The latent really rolls: it differs from the encoded first frame after some steps.
    assert not torch.equal(wm.latent, wm.encode(first[None]))
    assert wm.last_delta.shape == wm.latent.shape and len(wm.block_norms) == 1


def test_bad_actions_are_rejected(wm_dir):
    wm = WorldModel.load(wm_dir, bf16=False)
    first = infinipaint.minipaint.Minipaint().reset()
    with pytest.raises(RuntimeError):
        wm.step((1, 2, 0))
    wm.reset(first)
    for bad in [(224, 0, 0), (1, 2), (1.5, 2, 0), (1, 2, 3)]:
        with pytest.raises(ValueError):
            wm.step(bad)
    with pytest.raises(ValueError):
        wm.rollout(first[None], np.array([[[1, 2, 0, 0]]]))
    with pytest.raises(ValueError):
        wm.rollout(first[None], np.array([[[1, 300, 0]]]))
    with pytest.raises(ValueError):
        wm.reset(first[:100])


def test_mismatched_pair_is_refused(wm_dir, tmp_path):
    other = make_world_model_dir(tmp_path / "other", seed=1)
    for suffix in (".safetensors", ".json"):  # a different VAE beside the original dynamics
        (other / f"dynamics{suffix}").write_bytes((wm_dir / f"dynamics{suffix}").read_bytes())
    with pytest.raises(CheckpointError, match="different VAE"):
        WorldModel.load(other)
    info = json.loads((wm_dir / "dynamics.json").read_text())
    info["config"]["latent_channels"] = 8
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("vae.json", "vae.safetensors", "dynamics.safetensors"):
        (bad / name).write_bytes((wm_dir / name).read_bytes())
    (bad / "dynamics.json").write_text(json.dumps(info))
    with pytest.raises(CheckpointError):
        WorldModel.load(bad)
    with pytest.raises(CheckpointError):
        WorldModel.load(tmp_path / "missing")


def test_a_model_written_with_minipaint_knowledge_is_refused_by_name(wm_dir, tmp_path):
    """Model folders of versions whose network was told about Minipaint (a toolbar head, the
    toolbar's rows, the brush rasteriser) have config fields that no longer exist."""
    info = json.loads((wm_dir / "dynamics.json").read_text())
    old = tmp_path / "old"
    old.mkdir()
    for name in ("vae.json", "vae.safetensors", "dynamics.safetensors"):
        (old / name).write_bytes((wm_dir / name).read_bytes())
    for field, value in (("toolbar_head", True), ("context_rows", 8), ("geometry_kind", "brush")):
        (old / "dynamics.json").write_text(json.dumps({**info, "config": {**info["config"], field: value}}))
        with pytest.raises(CheckpointError, match=f"'{field}' no longer exists"):
            WorldModel.load(old)


def test_the_first_step_follows_the_recorded_reset_action(wm_dir):
    """The a_prev of a rollout's first step is the one the training data recorded (a config field)."""
    from dataclasses import replace

    wm = WorldModel.load(wm_dir, bf16=False)
    assert wm.prev_action == tuple(wm.dynamics.config.reset_action)
    first = infinipaint.minipaint.Minipaint().reset()
    a = wm.rollout(first[None], np.array([[(60, 60, 0)]]))
    wm.dynamics.config = replace(wm.dynamics.config, reset_action=(200, 200, 1))
    moved = WorldModel(wm.vae, wm.dynamics, bf16=False)
    assert moved.prev_action == (200, 200, 1)
    assert not np.array_equal(a, moved.rollout(first[None], np.array([[(60, 60, 0)]])))


def test_dream_env_passes_check_env(wm_dir):
    # As registered: gym.make's env has its spec, so check_env also makes it anew in every declared
    # render mode ("human" included) and renders it; any warning of the checker fails.
    env = gym.make("InfinipaintDream-v0", model_dir=wm_dir, render_mode="rgb_array")
    assert env.unwrapped.spec.id == "InfinipaintDream-v0" and env.metadata["render_modes"] == ["rgb_array", "human"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
    env = gym.make("InfinipaintDream-v0", model_dir=wm_dir, max_steps=2)
    obs, _ = env.reset()
    assert obs.shape == (224, 224, 3) and env.observation_space.contains(obs)
    assert env.action_space == gym.make("Minipaint-v0").action_space
    env.step(np.array([100, 100, 1]))
    assert env.step(np.array([110, 100, 1]))[3]  # truncated at max_steps


def test_a_retrained_decoder_fits_the_dynamics_of_its_encoder(tmp_path):
    torch.manual_seed(0)
    vae = VAE(VAE_PRESETS["tiny"])
    dyn = LatentCNN(DYNAMICS_PRESETS["tiny"])
    meta = {"vae_sha256": "0" * 64, "vae_encoder_sha256": vae_files.encoder_sha256(vae)}
    torch.nn.init.normal_(vae.decoder.conv_in.weight)  # a new decoder, the same encoder
    vae_files.save(vae, tmp_path / "ok")
    save_weights(dyn, tmp_path / "ok", "dynamics", dyn.config.to_dict(), meta)
    WorldModel.load(tmp_path / "ok")  # the file hash differs, the latent space does not
    torch.nn.init.normal_(vae.encoder.conv_in.weight)  # another encoder: another latent space
    vae_files.save(vae, tmp_path / "bad")
    save_weights(dyn, tmp_path / "bad", "dynamics", dyn.config.to_dict(), meta)
    with pytest.raises(CheckpointError, match="encoder"):
        WorldModel.load(tmp_path / "bad")


@pytest.mark.parametrize("bf16", [False, True])
def test_step_decodes_only_around_the_changed_cells(wm_dir, bf16):
    wm = WorldModel.load(wm_dir, bf16=bf16)
    torch.manual_seed(1)
    for m in wm.vae.decoder.modules():  # every conv live (residual blocks start as the identity)
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.normal_(m.weight, std=0.2)
    convs = [m for m in wm.vae.decoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert wm.decode_radius == sum(m.kernel_size[0] // 2 for m in convs) > 0
    wm.reset(infinipaint.minipaint.Minipaint().reset())
    z = wm.latent.clone()
    shapes = []
    full_decode = wm.decode
    wm.decode = lambda latent: shapes.append(tuple(latent.shape[-2:])) or full_decode(latent)
    for cells in ([(0, 0)], [(20, 30), (22, 33)], [(55, 10)], [(30, 54)]):
        new = z.clone()
        for y, x in cells:
            new[:, :, y, x] += 0.7
        shapes.clear()
        got = wm._redraw(z, new)
        assert shapes and shapes[0] != (56, 56)  # a window was decoded, not the whole map
        assert np.array_equal(got, full_decode(new)[0])
    shapes.clear()
    assert np.array_equal(wm._redraw(z, z.clone()), wm.frame) and not shapes  # nothing changed: no decode
    wide = z + 0.1  # every cell changed: one whole decode
    assert np.array_equal(wm._redraw(z, wide), full_decode(wide)[0]) and shapes == [(56, 56)]


def test_the_dynamics_runs_on_a_window_around_the_cursor():
    from infinipaint.models.dynamics import DynamicsConfig

    torch.manual_seed(0)
    vae = VAE(VAE_PRESETS["tiny"])
    dyn = LatentCNN(DynamicsConfig(preset="tiny", hidden=16, blocks=1, action_features=8, groups=4, norm="channel",
                                   train_crop=16, context=8))
    torch.nn.init.normal_(dyn.head.weight, std=0.05)
    assert WorldModel(vae, dyn, bf16=False).window == 16  # the crop it was trained on
    windowed, whole = WorldModel(vae, dyn, bf16=False), WorldModel(vae, dyn, bf16=False, window=0)
    z = torch.randn(2, 16, 56, 56)
    prev, act = torch.tensor([[100, 120, 1], [20, 10, 0]]), torch.tensor([[108, 128, 1], [24, 12, 1]])
    out, ref = windowed.advance(z, prev, act), whole.advance(z, prev, act)
    # sample 0: the 16x16 window centred between the cursors (latent (26, 31)) changes ...
    changed = (out[0] != z[0]).any(dim=0)
    ys, xs = torch.nonzero(changed, as_tuple=True)
    assert changed.any() and ys.min() >= 23 and ys.max() < 39 and xs.min() >= 18 and xs.max() < 34
    # ... as the net computes it on that window, its context reading the whole latent
    with torch.no_grad():
        crop = dyn.step(z[:1, :, 23:39, 18:34], dyn.action_input(prev[:1], act[:1])[..., 23:39, 18:34], z[:1])
    assert torch.allclose(out[0, :, 23:39, 18:34], crop[0], atol=1e-5)
    # sample 1, near the top: a window too (no region of the screen is special), clamped to the latent
    changed = (out[1] != z[1]).any(dim=0)
    ys, xs = torch.nonzero(changed, as_tuple=True)
    assert changed.any() and ys.max() < 16 and xs.max() < 16
    assert not torch.allclose(out[0], ref[0], atol=1e-5)
    with pytest.raises(ValueError, match="window"):
        WorldModel(vae, dyn, window=-1)


@pytest.mark.parametrize("grid,radius", [(56, 4), (56, 1), (28, 3)])
def test_redraw_windows_hold_the_receptive_field_in_few_shapes(grid, radius):
    from infinipaint.models.stepping import DECODE_TILE, redraw_box

    rng = np.random.default_rng(0)
    shapes = set()
    for _ in range(3000):
        y0, x0 = rng.integers(0, grid, 2)
        y1, x1 = y0 + rng.integers(0, 12), x0 + rng.integers(0, 12)
        y1, x1 = min(y1, grid - 1), min(x1, grid - 1)
        box = redraw_box((int(y0), int(y1)), (int(x0), int(x1)), radius, grid)
        if box is None:
            continue
        (py0, py1, px0, px1), (wy0, wy1, wx0, wx1) = box
        # The changed cells grown by the radius are pasted ...
        assert (py0, py1, px0, px1) == (max(y0 - radius, 0), min(y1 + 1 + radius, grid),
                                         max(x0 - radius, 0), min(x1 + 1 + radius, grid))
        # ... from a window holding their receptive field, inside the grid ...
        assert 0 <= wy0 <= max(py0 - radius, 0) and min(py1 + radius, grid) <= wy1 <= grid
        assert 0 <= wx0 <= max(px0 - radius, 0) and min(px1 + radius, grid) <= wx1 <= grid
        # ... whose sides are whole tiles (or the grid).
        for side in (wy1 - wy0, wx1 - wx0):
            assert side % DECODE_TILE == 0 or side == grid
        shapes.add((wy1 - wy0, wx1 - wx0))
    assert 1 < len(shapes) <= (-(-grid // DECODE_TILE)) ** 2
