"""Which part of a frame a step must decode again: shared by `WorldModel.step` and the ONNX
backend (no torch here).

With a local decoder, a latent cell changes the pixels of the cells up to `radius` away, and those
pixels depend on the latents up to `radius` further: so the cells in the bounding box of the
changed ones, grown by `radius`, are pasted from a decode of that box grown by `radius` again.
"""

from __future__ import annotations

WHOLE_SHARE = 0.6  # a window covering more of the latent than this: one whole decode is as cheap


def redraw_box(rows: tuple[int, int], cols: tuple[int, int], radius: int,
               grid: int) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]] | None:
    """For changed cells spanning rows[0]..rows[1] and cols[0]..cols[1] (inclusive) of a `grid` x
    `grid` latent: ((py0, py1, px0, px1) the cells to paste, (wy0, wy1, wx0, wx1) the window to
    decode), half-open; None where decoding the whole latent is as cheap."""
    py0, py1 = max(rows[0] - radius, 0), min(rows[1] + 1 + radius, grid)
    px0, px1 = max(cols[0] - radius, 0), min(cols[1] + 1 + radius, grid)
    wy0, wy1, wx0, wx1 = max(py0 - radius, 0), min(py1 + radius, grid), max(px0 - radius, 0), min(px1 + radius, grid)
    if (wy1 - wy0) * (wx1 - wx0) > WHOLE_SHARE * grid * grid:
        return None
    return (py0, py1, px0, px1), (wy0, wy1, wx0, wx1)
