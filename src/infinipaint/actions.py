"""Actions as the model sees them: the ActionStream (raw pointer -> steps) and the network encoding.

    from infinipaint.actions import ActionStream, encode_action, encode_pair, action_planes
    stream = ActionStream()
    steps = stream.push(100, 120, 1)           # the viewer: one pointer sample every 80 ms
    steps = ActionStream.process(samples)      # data generation / evaluation: a whole list
    planes = encode_action(100, 120, 1)        # (56, 56, 2) float32
    pair = encode_pair(prev, step)             # (56, 56, 4): [a_prev, a_next]
    planes = action_planes(actions)            # torch (B, 3) -> (B, 2, 56, 56), (B, T, 3) -> (B, T, 2, 56, 56)

ActionStream semantics. The stream remembers the last *emitted* step `(lx, ly, ld)`; `dist` is the
Euclidean distance from it to the new sample.
- The very first sample (after construction or `reset()`) is always emitted as is.
- Drag (down before and now) and hover (up before and now): ignored if `dist <= DEAD_ZONE` (4 px);
  otherwise the segment is split into `n >= ceil(dist / MAX_STEP)` equal sub-steps with integer
  rounding `lx + (2 * dx * i + n) // (2 * n)` (deterministic, the last one exactly at the sample);
  `n` is the smallest count for which no rounded sub-step is longer than MAX_STEP (12 px).
  Every drag and hover step is therefore longer than 4 px and at most 12 px.
- Press (up -> down): always emitted, never lost to the dead zone: one step `(x, y, 1)` at the
  sample. (A press may land far from the last step: only its position matters to Minipaint.)
- Release (down -> up): if the pointer moved more than 4 px, drag sub-steps to the sample with
  `down=1` first; then ONE idle step at the same position with `down=0` marking the end of the
  stroke. Idle steps (cursor still, button up) appear nowhere else.
- Pauses (repeated identical samples) produce nothing, so the viewer's 80 ms sampling and the
  procedural agents yield the same step statistics.

Encoding convention. Screen pixel `x` covers `[x, x + 1)`; latent cell `j` covers screen
`[4j, 4j + 4)` and its centre is latent coordinate `j`. So the cursor's latent coordinate is
`u = (x + 0.5) / 4 - 0.5` (sub-pixel exact, no rounding). Channel 0 is
`exp(-((j - u)^2 + (i - v)^2) / (2 sigma^2))` with sigma = 1 latent px (peak 1 at the exact
centre), row `i` = y, column `j` = x; channel 1 is the button state (0 or 1) everywhere.
`RESET_ACTION` is the action standing for Minipaint's reset state (cursor at the centre, button
up): the `a_prev` of the first step of every episode.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from infinipaint.minipaint import SCREEN, MinipaintState, validate_action

if TYPE_CHECKING:
    import torch

Step = tuple[int, int, int]

DEAD_ZONE = 4  # px: moves of this length or less are ignored
MAX_STEP = 12  # px: no drag or hover step is longer
SCALE = 4  # screen px per latent px
LATENT = SCREEN // SCALE  # 56
SIGMA = 1.0  # heatmap standard deviation in latent px
RESET_ACTION: Step = (*MinipaintState().cursor, int(MinipaintState().down))


def substeps(x0: int, y0: int, x1: int, y1: int) -> list[tuple[int, int]]:
    """Integer points splitting (x0, y0) -> (x1, y1) into equal steps of at most MAX_STEP px.

    The first point is excluded, the last is exactly (x1, y1)."""
    dx, dy = x1 - x0, y1 - y0
    n = max(1, math.ceil(math.hypot(dx, dy) / MAX_STEP))
    while True:
        pts = [(x0 + (2 * dx * i + n) // (2 * n), y0 + (2 * dy * i + n) // (2 * n)) for i in range(1, n + 1)]
        prev, ok = (x0, y0), True
        for p in pts:
            if math.hypot(p[0] - prev[0], p[1] - prev[1]) > MAX_STEP:
                ok = False
                break
            prev = p
        if ok:
            return pts
        n += 1


class ActionStream:
    """Raw pointer samples -> model steps (see the module docstring for the exact rules)."""

    def __init__(self) -> None:
        self.last: Step | None = None  # the last emitted step

    def reset(self) -> None:
        self.last = None

    def push(self, x: int, y: int, down: int) -> list[Step]:
        """The steps produced by one more raw sample (possibly none)."""
        x, y, down = validate_action((x, y, down))
        if self.last is None:
            out = [(x, y, down)]
        else:
            lx, ly, ld = self.last
            moved = math.hypot(x - lx, y - ly) > DEAD_ZONE
            if ld == down:  # drag or hover
                out = [(px, py, down) for px, py in substeps(lx, ly, x, y)] if moved else []
            elif down:  # press
                out = [(x, y, 1)]
            else:  # release: finish the stroke, then one idle step
                out = [(px, py, 1) for px, py in substeps(lx, ly, x, y)] if moved else []
                ex, ey = (x, y) if moved else (lx, ly)
                out.append((ex, ey, 0))
        if out:
            self.last = out[-1]
        return out

    @classmethod
    def process(cls, events: Iterable[Sequence[int]]) -> list[Step]:
        """All steps for a whole list of raw `(x, y, down)` samples, through a fresh stream."""
        stream = cls()
        steps: list[Step] = []
        for e in events:
            x, y, down = validate_action(e)
            steps.extend(stream.push(x, y, down))
        return steps


# ----------------------------------------------------------------------------------- encoding
def latent_coord(p: float) -> float:
    """Screen pixel coordinate -> latent coordinate (cell centres at integers)."""
    return (p + 0.5) / SCALE - 0.5


def encode_action(x: int, y: int, down: int) -> np.ndarray:
    """One action as (56, 56, 2) float32: cursor heatmap, button plane."""
    x, y, down = validate_action((x, y, down))
    grid = np.arange(LATENT, dtype=np.float32)
    gx = np.exp(-((grid - np.float32(latent_coord(x))) ** 2) / np.float32(2 * SIGMA**2))
    gy = np.exp(-((grid - np.float32(latent_coord(y))) ** 2) / np.float32(2 * SIGMA**2))
    out = np.empty((LATENT, LATENT, 2), dtype=np.float32)
    out[..., 0] = gy[:, None] * gx[None, :]
    out[..., 1] = down
    return out


def encode_pair(prev: Sequence[int], next: Sequence[int]) -> np.ndarray:
    """The dynamics input: previous and current action stacked, (56, 56, 4) float32."""
    return np.concatenate([encode_action(*prev), encode_action(*next)], axis=-1)


def action_planes(actions: "torch.Tensor") -> "torch.Tensor":
    """Batched encoding on the actions' device: (B, 3) -> (B, 2, 56, 56); (B, T, 3) -> (B, T, 2, 56, 56).

    Agrees with `encode_action` (channels first, float32)."""
    import torch

    if actions.shape[-1] != 3 or actions.dim() not in (2, 3):
        raise ValueError(f"actions must be (B, 3) or (B, T, 3), got {tuple(actions.shape)}")
    a = actions.to(torch.float32)
    grid = torch.arange(LATENT, dtype=torch.float32, device=a.device)
    u = (a[..., 0:1] + 0.5) / SCALE - 0.5  # (..., 1)
    v = (a[..., 1:2] + 0.5) / SCALE - 0.5
    gx = torch.exp(-((grid - u) ** 2) / (2 * SIGMA**2))  # (..., 56)
    gy = torch.exp(-((grid - v) ** 2) / (2 * SIGMA**2))
    heat = gy.unsqueeze(-1) * gx.unsqueeze(-2)  # (..., 56, 56)
    button = a[..., 2, None, None].expand_as(heat)
    return torch.stack([heat, button], dim=-3)  # (..., 2, 56, 56)


def pair_planes(prev: "torch.Tensor", next: "torch.Tensor") -> "torch.Tensor":
    """The dynamics input in torch: (B, 3) x 2 -> (B, 4, 56, 56) (also (B, T, 3) -> (B, T, 4, 56, 56))."""
    import torch

    return torch.cat([action_planes(prev), action_planes(next)], dim=-3)


GEOMETRY_CHANNELS = SCALE * SCALE  # one plane per pixel of a latent cell
GEOMETRY_REACH = 12.0  # px: brush radii go to 10; farther pixels read 0


def stroke_geometry(prev: "torch.Tensor", next: "torch.Tensor") -> "torch.Tensor":
    """Where a stroke would paint, at pixel precision, for a latent-resolution net: (B, 3) x 2 ->
    (B, 16, 56, 56), plane `SCALE * dy + dx` holding, for the pixel (4 i + dy, 4 j + dx) of each
    cell (i, j), `max(0, 1 - d / GEOMETRY_REACH)` where d is its distance in pixels to the segment
    from the previous cursor to this one (a drag: both buttons down), else to this cursor (a
    press or a hover). Minipaint paints the pixels within the brush radius of that segment; the
    heatmaps of `pair_planes` give the cursor only to a fraction of a cell."""
    import torch

    if prev.shape != next.shape or prev.dim() != 2 or prev.shape[-1] != 3:
        raise ValueError(f"prev and next must both be (B, 3), got {tuple(prev.shape)}, {tuple(next.shape)}")
    a, b = prev.to(torch.float32), next.to(torch.float32)
    drag = (a[:, 2] > 0) & (b[:, 2] > 0)
    p1 = b[:, :2]
    p0 = torch.where(drag[:, None], a[:, :2], p1)
    pix = torch.arange(SCREEN, dtype=torch.float32, device=a.device)
    px, py = pix.view(1, 1, -1), pix.view(1, -1, 1)  # (1, 1, 224), (1, 224, 1)
    dx, dy = (p1 - p0)[:, 0, None, None], (p1 - p0)[:, 1, None, None]  # (B, 1, 1)
    rx, ry = px - p0[:, 0, None, None], py - p0[:, 1, None, None]  # (B, 224, 224) after broadcast
    t = ((rx * dx + ry * dy) / (dx * dx + dy * dy).clamp(min=1e-6)).clamp(0, 1)
    d = torch.sqrt((rx - t * dx) ** 2 + (ry - t * dy) ** 2)  # (B, 224, 224)
    near = (1 - d / GEOMETRY_REACH).clamp(min=0)
    return cell_planes(near)



def brush_footprint(prev: "torch.Tensor", next: "torch.Tensor") -> "torch.Tensor":
    """Which brush sizes would paint each pixel, exactly as Minipaint rasterises a stroke:
    (B, 3) x 2 -> (B, 16, 56, 56) in the layout of `stroke_geometry`, each pixel holding
    `(N + 1 - s_min) / N` where `s_min` is the smallest of the N sizes whose stroke covers it (0 where
    none does). So brush `s` paints the pixel exactly when the plane reads `>= (N + 1 - s) / N`:
    one threshold per size, the same everywhere, instead of pygame's off-centre discs and rounded
    stamps, which a Euclidean distance only approximates (by 12 to 35 px per step).

    A drag (both buttons down) stamps a disc at every rounded pixel step from the previous cursor
    to this one, as `Minipaint._stroke`; otherwise one disc at this cursor. For each pixel the nearest
    stamps (by projection on the segment) are looked up in `brush_sizes_table`; steps are at most
    12 px, and three stamps on each side of the projection are enough for every pixel (two miss
    a few pixels of pygame's radius-6 disc)."""
    import torch

    from infinipaint.minipaint import LAYOUT

    if prev.shape != next.shape or prev.dim() != 2 or prev.shape[-1] != 3:
        raise ValueError(f"prev and next must both be (B, 3), got {tuple(prev.shape)}, {tuple(next.shape)}")
    sizes = len(LAYOUT.sizes)
    table = torch.as_tensor(_brush_table(), device=prev.device)  # (2R + 1, 2R + 1)
    reach = (table.shape[0] - 1) // 2
    a, b = prev.round().long(), next.round().long()
    drag = (a[:, 2] > 0) & (b[:, 2] > 0)
    x1, y1 = b[:, 0, None, None], b[:, 1, None, None]  # (B, 1, 1)
    x0 = torch.where(drag, a[:, 0], b[:, 0])[:, None, None]
    y0 = torch.where(drag, a[:, 1], b[:, 1])[:, None, None]
    dx, dy = x1 - x0, y1 - y0
    n = torch.maximum(dx.abs(), dy.abs())  # stamps 0..n
    # Only a window around the segment can be painted: on cell boundaries, inside the screen.
    longest = int(n.max()) if len(n) else 0
    window = min(SCREEN, SCALE * math.ceil((longest + 2 * reach + SCALE + 1) / SCALE))
    left = torch.div(torch.minimum(x0, x1) - reach, SCALE, rounding_mode="floor") * SCALE
    top = torch.div(torch.minimum(y0, y1) - reach, SCALE, rounding_mode="floor") * SCALE
    left, top = left.clamp(0, SCREEN - window), top.clamp(0, SCREEN - window)
    span = torch.arange(window, device=prev.device)
    px, py = left + span.view(1, 1, -1), top + span.view(1, -1, 1)  # (B, 1, W), (B, W, 1)
    length2 = (dx * dx + dy * dy).clamp(min=1).float()
    t = (((px - x0) * dx + (py - y0) * dy).float() / length2).clamp(0, 1)
    centre = (t * n.float()).round().long()  # (B, W, W): the stamp nearest the projection
    best = torch.full(centre.shape, sizes + 1, dtype=torch.long, device=prev.device)
    half = (2 * n).clamp(min=1)
    for k in range(-3, 4):
        i = torch.minimum((centre + k).clamp(min=0), n)
        sx = x0 + torch.div(2 * dx * i + n, half, rounding_mode="floor")
        sy = y0 + torch.div(2 * dy * i + n, half, rounding_mode="floor")
        ox, oy = px - sx, py - sy
        inside = (ox.abs() <= reach) & (oy.abs() <= reach)
        hit = table[(oy.clamp(-reach, reach) + reach), (ox.clamp(-reach, reach) + reach)]
        best = torch.minimum(best, torch.where(inside, hit, sizes + 1))
    cover = torch.zeros(len(prev), SCREEN, SCREEN, device=prev.device)  # then the window's values
    rows = py.expand(-1, -1, window)
    cols = px.expand(-1, window, -1)
    batch = torch.arange(len(prev), device=prev.device).view(-1, 1, 1).expand_as(rows)
    cover[batch, rows, cols] = (sizes + 1 - best).float() / sizes
    return cell_planes(cover)


@functools.lru_cache(maxsize=1)
def _brush_table() -> np.ndarray:
    from infinipaint.minipaint import brush_sizes_table

    return brush_sizes_table()


def cell_planes(pixels: "torch.Tensor") -> "torch.Tensor":
    """(B, 4h, 4w) -> (B, 16, h, w): plane `SCALE * dy + dx` holds pixel (4 i + dy, 4 j + dx) of cell (i, j)."""
    b, h, w = pixels.shape[0], pixels.shape[-2] // SCALE, pixels.shape[-1] // SCALE
    # (B, h, 4, w, 4) -> (B, 4, 4, h, w) -> (B, 16, h, w)
    return pixels.reshape(b, h, SCALE, w, SCALE).permute(0, 2, 4, 1, 3).reshape(b, SCALE * SCALE, h, w)


def cell_pixels(planes: "torch.Tensor") -> "torch.Tensor":
    """The inverse of `cell_planes`: (B, 16, h, w) -> (B, 4h, 4w)."""
    b, h, w = planes.shape[0], planes.shape[-2], planes.shape[-1]
    return planes.reshape(b, SCALE, SCALE, h, w).permute(0, 3, 1, 4, 2).reshape(b, h * SCALE, w * SCALE)


def heatmap_center(plane: np.ndarray) -> tuple[float, float]:
    """Recover the cursor's latent (x, y) from a (56, 56) heatmap.

    A Gaussian is exactly a parabola in log space: fit one through the peak and its neighbours on
    each axis (shifted inwards at the border)."""
    h = np.asarray(plane, dtype=np.float64)
    if h.shape != (LATENT, LATENT):
        raise ValueError(f"heatmap must be ({LATENT}, {LATENT}), got {h.shape}")
    i0, j0 = np.unravel_index(int(np.argmax(h)), h.shape)
    logh = np.log(np.maximum(h, 1e-300))

    def vertex(values: np.ndarray, k: int) -> float:
        c = min(max(k, 1), LATENT - 2)
        lm, l0, lp = values[c - 1], values[c], values[c + 1]
        curv = lm - 2 * l0 + lp
        return c + (0.5 * (lm - lp) / curv if curv != 0 else 0.0)

    return vertex(logh[i0, :], j0), vertex(logh[:, j0], i0)


def screen_from_latent(u: float) -> float:
    """Latent coordinate -> screen pixel coordinate (inverse of `latent_coord`)."""
    return (u + 0.5) * SCALE - 0.5
