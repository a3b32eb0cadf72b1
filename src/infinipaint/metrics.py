"""SSIM and PSNR, implemented once, batched, in torch: used by training, evaluation and benchmarks.

    from infinipaint.metrics import ssim, psnr, ssim_map, frame_metrics, ssim_loss
    s = ssim(pred, target)                       # (B,) for float (B, 3, H, W) in [0, 1]
    m = ssim_map(pred, target, full=True)        # (B, H, W), RGB-averaged, for per-region SSIM
    region = masked_mean(m, LAYOUT.mask("canvas"))  # (B,)
    scores = frame_metrics(frames_a, frames_b)   # uint8 (B, H, W, 3) -> {"ssim": (B,), "psnr": (B,)}
    loss = ssim_loss(pred, target)               # 1 - mean SSIM, differentiable

SSIM is the definition of SPEC §6 and agrees with
`skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=1, channel_axis=-1)`: an 11-tap Gaussian window (sigma 1.5, radius int(3.5 * 1.5 + 0.5)
= 5), population covariance, K1 = 0.01, K2 = 0.03, the map of each channel averaged after cropping
`radius` pixels off every border (skimage does the same; the cropped pixels are the only ones whose
value depends on the border mode), then the three channels averaged. `ssim_map(..., full=True)`
returns the uncropped map, with skimage's border mode (scipy "reflect", i.e. symmetric padding).

Everything runs in float32 (float64 if given float64) with autocast switched off, so the metric
means the same inside a bf16 training step as in evaluation.

PSNR is 10 log10(1 / MSE) per image with data range 1, capped at `PSNR_CAP_DB` = 100 dB: identical
frames score exactly 100 dB. The smallest non-zero error between uint8 224x224 frames (one channel of
one pixel off by one level) scores 99.9 dB, so the cap never hides a real difference.
"""

from __future__ import annotations

import functools
import numpy as np
import torch

SIGMA = 1.5
TRUNCATE = 3.5
RADIUS = int(TRUNCATE * SIGMA + 0.5)  # 5: an 11-tap window, as skimage
K1, K2 = 0.01, 0.03
DATA_RANGE = 1.0
PSNR_CAP_DB = 100.0  # PSNR of identical frames (and of any MSE below 1e-10)

ArrayLike = np.ndarray | torch.Tensor


def gaussian_window(sigma: float = SIGMA, radius: int = RADIUS, dtype=torch.float32) -> torch.Tensor:
    """The normalised 1-D Gaussian taps scipy.ndimage uses: (2 * radius + 1,)."""
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return (w / w.sum()).to(dtype)


def to_float(frames: ArrayLike) -> torch.Tensor:
    """uint8 frames (B, H, W, 3) or (H, W, 3), numpy or torch, -> float32 (B, 3, H, W) in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    if t.dtype != torch.uint8:
        raise ValueError(f"expected uint8 frames, got {t.dtype}")
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4 or t.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames of shape (B, H, W, 3), got {tuple(t.shape)}")
    return t.permute(0, 3, 1, 2).float().div_(255.0)


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape:
        raise ValueError(f"shape mismatch: {tuple(x.shape)} vs {tuple(y.shape)}")
    if x.ndim != 4:
        raise ValueError(f"expected (B, C, H, W) tensors, got {tuple(x.shape)}")
    if min(x.shape[-2:]) < 2 * RADIUS + 1:
        raise ValueError(f"images must be at least {2 * RADIUS + 1} px on each side, got {tuple(x.shape[-2:])}")


@functools.lru_cache(maxsize=16)
def _band(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(n, n - 2r) banded matrix whose columns are the Gaussian taps: t @ band blurs the last axis."""
    w = gaussian_window(dtype=dtype).to(device)
    d = torch.arange(n, device=device)[:, None] - torch.arange(n - 2 * RADIUS, device=device)[None, :]
    return torch.where((d >= 0) & (d <= 2 * RADIUS), w[d.clamp(0, 2 * RADIUS)], torch.zeros((), dtype=dtype, device=device))


def _blur(t: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian, valid region only: (B, C, H, W) -> (B, C, H - 2r, W - 2r).

    Two matmuls with banded matrices: on CPU this is 3-5x faster than a depthwise conv, forward and
    backward, which matters when SSIM is a training loss.
    """
    h, w = t.shape[-2:]
    t = t @ _band(w, t.dtype, t.device)  # (B, C, H, W - 2r)
    return _band(h, t.dtype, t.device).T @ t  # (B, C, H - 2r, W - 2r)


def _symmetric_pad(t: torch.Tensor, r: int) -> torch.Tensor:
    """Pad H and W by r with edge-inclusive mirroring (scipy 'reflect', numpy 'symmetric')."""
    t = torch.cat([t[..., :r, :].flip(-2), t, t[..., -r:, :].flip(-2)], dim=-2)
    return torch.cat([t[..., :r].flip(-1), t, t[..., -r:].flip(-1)], dim=-1)


def ssim_map(x: torch.Tensor, y: torch.Tensor, full: bool = False) -> torch.Tensor:
    """Per-pixel SSIM averaged over channels: (B, C, H, W) -> (B, H - 2r, W - 2r), or (B, H, W) if full.

    The cropped map is what `ssim` averages; `full=True` pads like skimage so that region masks of the
    whole frame (LAYOUT.mask) apply directly.
    """
    _check_pair(x, y)
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    with torch.autocast(x.device.type, enabled=False):
        x, y = x.to(dtype), y.to(dtype)
        if full:
            x, y = _symmetric_pad(x, RADIUS), _symmetric_pad(y, RADIUS)
        c = x.shape[1]
        stats = _blur(torch.cat([x, y, x * x, y * y, x * y], dim=1))
        mx, my, mxx, myy, mxy = stats.split(c, dim=1)
        vx, vy, cxy = mxx - mx * mx, myy - my * my, mxy - mx * my
        c1, c2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        return s.mean(dim=1)  # (B, H', W')


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SSIM of each image pair, float (B, C, H, W) in [0, 1] -> (B,). Matches skimage (see module doc)."""
    return ssim_map(x, y).mean(dim=(-2, -1))


def ssim_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - mean SSIM over the batch: a differentiable scalar for training (computed in float32)."""
    return 1.0 - ssim(pred, target).mean()


def masked_mean(maps: torch.Tensor, mask: ArrayLike) -> torch.Tensor:
    """Mean of full-size maps (B, H, W) over a boolean (H, W) region mask -> (B,)."""
    m = torch.as_tensor(np.asarray(mask) if isinstance(mask, np.ndarray) else mask, device=maps.device)
    if m.shape != maps.shape[-2:] or m.dtype != torch.bool:
        raise ValueError(f"mask must be bool {tuple(maps.shape[-2:])}, got {m.dtype} {tuple(m.shape)}")
    if not m.any():
        raise ValueError("mask selects no pixels")
    return maps[:, m].mean(dim=-1)


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of each pair, float (B, C, H, W) in [0, 1] -> (B,), capped at PSNR_CAP_DB.

    The cap is reached only by (near-)identical frames: the smallest non-zero error between uint8
    frames, one channel of one 224x224 pixel off by one level, is 10 log10(255^2 * 150528) ~ 99.9 dB,
    just below it, so the cap never hides a visible difference.
    """
    _check_pair(x, y)
    with torch.autocast(x.device.type, enabled=False):
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        mse = (x.to(dtype) - y.to(dtype)).pow(2).mean(dim=(1, 2, 3))
        db = 10.0 * torch.log10(DATA_RANGE**2 / mse.clamp_min(1e-30))
        return db.clamp(max=PSNR_CAP_DB)


@torch.no_grad()
def frame_metrics(a: ArrayLike, b: ArrayLike, chunk: int = 64) -> dict[str, np.ndarray]:
    """SSIM and PSNR of uint8 frame pairs (B, H, W, 3) -> {"ssim": (B,), "psnr": (B,)} float64 arrays."""
    x, y = to_float(a), to_float(b)
    _check_pair(x, y)
    out: dict[str, list[torch.Tensor]] = {"ssim": [], "psnr": []}
    for i in range(0, x.shape[0], chunk):
        xi, yi = x[i : i + chunk], y[i : i + chunk]
        out["ssim"].append(ssim(xi, yi))
        out["psnr"].append(psnr(xi, yi))
    return {k: torch.cat(v).double().numpy() for k, v in out.items()}
