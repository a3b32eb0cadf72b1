"""The network's encoding of actions: heatmap and button planes on the latent grid."""

import numpy as np
import pytest
import torch

from infinipaint.models.encoding import (
    GRID, action_planes, check_action, encode_action, encode_pair, heatmap_center, latent_coord, pair_planes,
)

LATENT, SCREEN = GRID, GRID * 4


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


def test_other_grid_sizes_and_bad_actions():
    """The encoding knows no app: any square grid (a frame of 4 x grid pixels) works the same."""
    small = encode_action(10, 30, 1, grid=10)
    assert small.shape == (10, 10, 2) and np.unravel_index(np.argmax(small[..., 0]), (10, 10)) == (7, 2)
    assert pair_planes(torch.tensor([[10, 30, 1]]), torch.tensor([[12, 30, 1]]), grid=10).shape == (1, 4, 10, 10)
    for bad in ((40, 0, 0), (0, 0, 2), (1.5, 0, 0), (True, 0, 0), (1, 2)):
        with pytest.raises(ValueError):
            check_action(bad, 40)
    assert check_action((np.int64(39), 0, 1), 40) == (39, 0, 1)


def test_drag_origins_follow_the_pointer_stream():
    from infinipaint.models.encoding import NO_ORIGIN, drag_origins, next_origins

    a = np.array([[0, 0, 0], [10, 20, 0], [10, 20, 1], [40, 50, 1], [40, 50, 0], [7, 8, 1], [9, 9, 1], [9, 9, 0]])
    o = drag_origins(a)
    assert o.tolist() == [[-1, -1], [-1, -1], [10, 20], [10, 20], [-1, -1], [7, 8], [7, 8], [-1, -1]]
    assert drag_origins(np.array([[5, 6, 1], [7, 8, 1]])).tolist() == [[5, 6], [5, 6]]  # held from row 0
    origin = torch.full((1, 2), NO_ORIGIN)
    t = torch.from_numpy(a)
    for i in range(1, len(a)):  # the batched update agrees with the stream function
        origin = next_origins(origin, t[i - 1 : i], t[i : i + 1])
        assert origin[0].tolist() == o[i].tolist()
    with pytest.raises(ValueError):
        drag_origins(np.zeros((3, 2)))


def test_origin_plane():
    from infinipaint.models.encoding import origin_plane

    p = origin_plane(torch.tensor([[100, 120], [-1, -1]]))
    assert p.shape == (2, 1, GRID, GRID)
    assert p[1].abs().max() == 0  # no drag: nothing
    np.testing.assert_allclose(p[0, 0].numpy(), encode_action(100, 120, 1)[..., 0], atol=1e-6)  # the cursor's heatmap
