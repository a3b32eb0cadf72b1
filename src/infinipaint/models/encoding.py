"""Actions as the network sees them: planes on the latent grid (SPEC §2).

    from infinipaint.models.encoding import encode_action, encode_pair, action_planes, pair_planes
    planes = encode_action(100, 120, 1)        # (56, 56, 2) float32: cursor heatmap, button plane
    pair = encode_pair(prev, step)             # (56, 56, 4): [a_prev, a_next]
    planes = pair_planes(prev, next)           # torch (B, 3) x 2 -> (B, 4, 56, 56)
    origins = drag_origins(actions)            # (T, 3) -> (T, 2): where the drag under way began, -1: none
    plane = origin_plane(origin)               # torch (B, 2) -> (B, 1, 56, 56)
    offsets = offset_planes(actions)           # torch (B, 3) -> (B, 2, 56, 56): the cursor to the pixel, from each cell

Nothing here knows the app: an action is a pointer `(x, y, down)` in screen pixels, and the grid is
the latent's (`grid` cells a side, `SCALE` screen pixels per cell, the VAE's compression).

Convention. Screen pixel `x` covers `[x, x + 1)`; latent cell `j` covers screen `[4j, 4j + 4)` and
its centre is latent coordinate `j`. So the cursor's latent coordinate is `u = (x + 0.5) / 4 - 0.5`
(sub-pixel exact, no rounding). Channel 0 is `exp(-((j - u)^2 + (i - v)^2) / (2 sigma^2))` with
sigma = 1 latent cell (peak 1 at the exact centre), row `i` = y, column `j` = x; channel 1 is the
button state (0 or 1) everywhere.

The drag origin. What a drag does can depend on where the button went down, which the screen may
no longer show (a press on a button that is dragged away). That point is a property of the pointer
stream alone: while the button is held it is the position of the step that pressed it; with the
button up there is none (-1, -1). `origin_plane` draws it as one more heatmap (zero when none).

Cursor offsets. The heatmap gives the cursor's position to a fraction of a cell only through the
ratio of neighbouring values. `offset_planes` gives it at the frame's pixel resolution: at every
cell, the screen-pixel offset from the cell's centre to the cursor, x and y, over `OFFSET_RANGE`
pixels and clipped to [-1, 1] (a cell further away than that on an axis sees the clip).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from .stepping import check_action
from .vae import COMPRESSION

if TYPE_CHECKING:
    import torch

SCALE = COMPRESSION  # screen px per latent cell
GRID = 56  # latent cells a side of the default 224-px frame
SIGMA = 1.0  # heatmap standard deviation in latent cells


def latent_coord(p: float) -> float:
    """Screen pixel coordinate -> latent coordinate (cell centres at integers)."""
    return (p + 0.5) / SCALE - 0.5


def screen_from_latent(u: float) -> float:
    """Latent coordinate -> screen pixel coordinate (inverse of `latent_coord`)."""
    return (u + 0.5) * SCALE - 0.5


def encode_action(x: int, y: int, down: int, grid: int = GRID) -> np.ndarray:
    """One action as (grid, grid, 2) float32: cursor heatmap, button plane."""
    x, y, down = check_action((x, y, down), grid * SCALE)
    cells = np.arange(grid, dtype=np.float32)
    gx = np.exp(-((cells - np.float32(latent_coord(x))) ** 2) / np.float32(2 * SIGMA**2))
    gy = np.exp(-((cells - np.float32(latent_coord(y))) ** 2) / np.float32(2 * SIGMA**2))
    out = np.empty((grid, grid, 2), dtype=np.float32)
    out[..., 0] = gy[:, None] * gx[None, :]
    out[..., 1] = down
    return out


def encode_pair(prev: Sequence[int], next: Sequence[int], grid: int = GRID) -> np.ndarray:
    """The dynamics input: previous and current action stacked, (grid, grid, 4) float32."""
    return np.concatenate([encode_action(*prev, grid=grid), encode_action(*next, grid=grid)], axis=-1)


def action_planes(actions: "torch.Tensor", grid: int = GRID) -> "torch.Tensor":
    """Batched encoding on the actions' device: (B, 3) -> (B, 2, grid, grid); (B, T, 3) -> (B, T, 2, grid, grid).

    Agrees with `encode_action` (channels first, float32)."""
    import torch

    if actions.shape[-1] != 3 or actions.dim() not in (2, 3):
        raise ValueError(f"actions must be (B, 3) or (B, T, 3), got {tuple(actions.shape)}")
    a = actions.to(torch.float32)
    cells = torch.arange(grid, dtype=torch.float32, device=a.device)
    u = (a[..., 0:1] + 0.5) / SCALE - 0.5  # (..., 1)
    v = (a[..., 1:2] + 0.5) / SCALE - 0.5
    gx = torch.exp(-((cells - u) ** 2) / (2 * SIGMA**2))  # (..., grid)
    gy = torch.exp(-((cells - v) ** 2) / (2 * SIGMA**2))
    heat = gy.unsqueeze(-1) * gx.unsqueeze(-2)  # (..., grid, grid)
    button = a[..., 2, None, None].expand_as(heat)
    return torch.stack([heat, button], dim=-3)  # (..., 2, grid, grid)


def pair_planes(prev: "torch.Tensor", next: "torch.Tensor", grid: int = GRID) -> "torch.Tensor":
    """The dynamics input in torch: (B, 3) x 2 -> (B, 4, grid, grid) (also (B, T, 3) -> (B, T, 4, grid, grid))."""
    import torch

    return torch.cat([action_planes(prev, grid), action_planes(next, grid)], dim=-3)


OFFSET_RANGE = 32.0  # screen pixels of cursor offset that map to 1 in `offset_planes`


def offset_planes(actions: "torch.Tensor", grid: int = GRID) -> "torch.Tensor":
    """(B, 3) -> (B, 2, grid, grid): at cell (i, j), ((x - cx_j) / R, (y - cy_i) / R) clipped to
    [-1, 1], with (cx_j, cy_i) the cell's centre in screen pixels and R = `OFFSET_RANGE`."""
    import torch

    if actions.dim() != 2 or actions.shape[-1] != 3:
        raise ValueError(f"actions must be (B, 3), got {tuple(actions.shape)}")
    a = actions.to(torch.float32)
    centres = screen_from_latent(torch.arange(grid, dtype=torch.float32, device=a.device))  # (grid,)
    dx = ((a[:, 0:1] - centres) / OFFSET_RANGE).clamp(-1, 1)  # (B, grid) over columns
    dy = ((a[:, 1:2] - centres) / OFFSET_RANGE).clamp(-1, 1)  # over rows
    b = a.shape[0]
    return torch.stack([dx[:, None, :].expand(b, grid, grid), dy[:, :, None].expand(b, grid, grid)], dim=1)


NO_ORIGIN = -1  # the origin's coordinates while the button is up


def drag_origins(actions: np.ndarray) -> np.ndarray:
    """Per step of a pointer stream (T, 3) (row 0 included, whatever came before it taken as
    button up), where the current drag began: (T, 2) int64, (-1, -1) while the button is up."""
    a = np.asarray(actions, dtype=np.int64)
    if a.ndim != 2 or a.shape[1] != 3:
        raise ValueError(f"actions must be (T, 3), got {a.shape}")
    down = a[:, 2] == 1
    press = down & ~np.concatenate([[False], down[:-1]])
    last = np.maximum.accumulate(np.where(press, np.arange(len(a)), 0)) if len(a) else np.zeros(0, np.int64)
    out = a[last, :2].copy()
    out[~down] = NO_ORIGIN
    return out


def next_origins(origin: "torch.Tensor", prev: "torch.Tensor", action: "torch.Tensor") -> "torch.Tensor":
    """Batched stream update: the drag origin (B, 2) at `action` (B, 3), from the one at `prev`."""
    import torch

    down = action[:, 2:3] == 1
    pressed = down & (prev[:, 2:3] == 0)
    none = torch.full_like(origin, NO_ORIGIN)
    return torch.where(down, torch.where(pressed, action[:, :2].to(origin.dtype), origin), none)


def origin_plane(origin: "torch.Tensor", grid: int = GRID) -> "torch.Tensor":
    """The drag origin as a heatmap (B, 1, grid, grid) like the cursor's, all zero where there is none."""
    import torch

    if origin.dim() != 2 or origin.shape[-1] != 2:
        raise ValueError(f"origins must be (B, 2), got {tuple(origin.shape)}")
    valid = (origin[:, 0] >= 0).to(torch.float32)
    xy = origin.clamp(min=0)
    planes = action_planes(torch.cat([xy, valid[:, None].to(xy.dtype)], dim=1), grid)  # heat, "button" = valid
    return planes[:, :1] * valid[:, None, None, None]


def heatmap_center(plane: np.ndarray) -> tuple[float, float]:
    """Recover the cursor's latent (x, y) from a square heatmap.

    A Gaussian is exactly a parabola in log space: fit one through the peak and its neighbours on
    each axis (shifted inwards at the border)."""
    h = np.asarray(plane, dtype=np.float64)
    if h.ndim != 2 or h.shape[0] != h.shape[1] or h.shape[0] < 3:
        raise ValueError(f"heatmap must be square and at least 3 x 3, got {h.shape}")
    n = h.shape[0]
    i0, j0 = np.unravel_index(int(np.argmax(h)), h.shape)
    logh = np.log(np.maximum(h, 1e-300))

    def vertex(values: np.ndarray, k: int) -> float:
        c = min(max(k, 1), n - 2)
        lm, l0, lp = values[c - 1], values[c], values[c + 1]
        curv = lm - 2 * l0 + lp
        return c + (0.5 * (lm - lp) / curv if curv != 0 else 0.0)

    return vertex(logh[i0, :], j0), vertex(logh[:, j0], i0)
