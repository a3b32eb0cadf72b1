"""What stepping a world model needs besides the networks, without torch: shared by `WorldModel`
and the ONNX backend (`infinipaint.onnx_backend`, which must not import torch).

`check_action` / `check_step`: one pointer step `(x, y, down)`, integers only, on the screen.

`redraw_box`: which part of a frame a step must decode again. With a local decoder, a latent cell
changes the pixels of the cells up to `radius` away, and those pixels depend on the latents up to
`radius` further: so the cells in the bounding box of the changed ones, grown by `radius`, are
pasted from a decode of that box grown by `radius` again. The window's sides are rounded up to
a multiple of `DECODE_TILE` cells (moved inward at the edges of the grid), so a session decodes
at most (grid / DECODE_TILE)^2 window shapes: the kernels a CPU backend builds for each input
shape are then reused instead of rebuilt. With free sizes, 1,000 steps of a painting session
decoded ~300 shapes and the viewer's memory grew by ~6 MB per 1,000 steps; with 8-cell tiles,
32 shapes and no growth.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def check_action(action: Sequence[int], size: int) -> tuple[int, int, int]:
    """`(x, y, down)` as ints, or ValueError unless `0 <= x, y < size` and `down` is 0 or 1."""
    try:
        x, y, down = action
    except (TypeError, ValueError):
        raise ValueError(f"an action is (x, y, down), got {action!r}") from None
    for v in (x, y, down):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"action values must be integers, got {action!r}")
    if not (0 <= x < size and 0 <= y < size) or down not in (0, 1):
        raise ValueError(f"action {tuple(action)} out of range: need 0 <= x, y < {size} and down in {{0, 1}}")
    return int(x), int(y), int(down)


def check_step(action: object, size: int) -> tuple[int, int, int]:
    """One step `(x, y, down)` given as a tuple, list or integer numpy array of 3 ints (`check_action`)."""
    if isinstance(action, np.ndarray):
        if action.shape != (3,) or not np.issubdtype(action.dtype, np.integer):
            raise ValueError(f"an action array must be 3 integers (x, y, down), got {action.dtype} {action.shape}")
        action = action.tolist()
    elif not isinstance(action, (tuple, list)):
        raise ValueError(f"an action is (x, y, down), a tuple of 3 integers, got {type(action).__name__}")
    return check_action(action, size)


WHOLE_SHARE = 0.6  # a window covering more of the latent than this: one whole decode is as cheap
DECODE_TILE = 8  # cells: the decode window's sides are multiples of this (or the whole grid)


def _tile(lo: int, hi: int, grid: int) -> tuple[int, int]:
    """The span lo..hi (half-open) grown to a multiple of DECODE_TILE cells, inside 0..grid."""
    n = min(-(-(hi - lo) // DECODE_TILE) * DECODE_TILE, grid)
    lo = max(min(lo, grid - n), 0)
    return lo, lo + n


def redraw_box(rows: tuple[int, int], cols: tuple[int, int], radius: int,
               grid: int) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]] | None:
    """For changed cells spanning rows[0]..rows[1] and cols[0]..cols[1] (inclusive) of a `grid` x
    `grid` latent: ((py0, py1, px0, px1) the cells to paste, (wy0, wy1, wx0, wx1) the window to
    decode, its sides multiples of DECODE_TILE), half-open; None where decoding the whole latent is
    as cheap."""
    py0, py1 = max(rows[0] - radius, 0), min(rows[1] + 1 + radius, grid)
    px0, px1 = max(cols[0] - radius, 0), min(cols[1] + 1 + radius, grid)
    wy0, wy1 = _tile(max(py0 - radius, 0), min(py1 + radius, grid), grid)
    wx0, wx1 = _tile(max(px0 - radius, 0), min(px1 + radius, grid), grid)
    if (wy1 - wy0) * (wx1 - wx0) > WHOLE_SHARE * grid * grid:
        return None
    return (py0, py1, px0, px1), (wy0, wy1, wx0, wx1)
