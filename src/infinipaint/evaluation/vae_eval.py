"""VAE evaluation: reconstruction quality on held-out frames and the latent-change analysis.

    infinipaint eval vae --model weights/cpu --data data/cpu [--out out/vae-eval] [--frames 2000]

Frames are drawn evenly from the test episodes and reconstructed exactly as the world model will
(bf16 autocast unless `--precision fp32`). Writes `metrics.json` (psnr_mean, psnr_p5, psnr_min,
ssim_mean, ssim_p5, ssim_min, per-region SSIM on the regions of the layout the dataset was recorded
on, SSIM by canvas density, latent-change shares) and
`grid.png`: the worst and typical frames as truth | reconstruction | difference (×4).

Latent change: for consecutive frames, the share of latent positions whose change is significant
(the largest |z_{t+1} - z_t| over channels exceeds `0.1 x` the mean per-channel std of the test
latents), split by what the step did (a stroke, an erase, a UI press, a hover).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from infinipaint.errors import DataError

DENSITY_BINS = (0.0, 0.05, 0.1, 0.2, 0.4, 1.01)
SIGNIFICANT = 0.1  # a latent change above this fraction of the latent std is significant


def _sample(reader, keys: list[str], n: int) -> list[tuple[str, int]]:
    """About n (key, t) pairs spread evenly over the episodes' frames."""
    total = sum(reader.steps(k) + 1 for k in keys)
    stride = max(1, total // n)
    picks, offset = [], 0
    for k in keys:
        length = reader.steps(k) + 1
        first = (-offset) % stride
        picks += [(k, t) for t in range(first, length, stride)]
        offset += length
    return picks[:n]


def evaluate_vae(model_dir: str | Path, data_dir: str | Path, out: str | Path, frames: int = 2000,
                 batch: int = 32, bf16: bool = True, pairs: int = 1500) -> dict[str, Any]:
    """Reconstruct about `frames` test frames of a dataset with the VAE in `model_dir`; write
    metrics.json and grid.png to `out`; return the metrics."""
    from tqdm import tqdm

    from infinipaint.data.agents import KINDS
    from infinipaint.data.storage import DatasetReader
    from infinipaint.metrics import RADIUS, masked_mean, psnr, ssim_map
    from infinipaint.minipaint import get_layout
    from infinipaint.models.vae import load

    from .evaluate import dataset_layout

    vae = load(model_dir)
    reader = DatasetReader(data_dir)
    keys = reader.keys("test")
    if not keys:
        raise DataError(f"{data_dir}: the test split is empty")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    picks = _sample(reader, keys, frames)
    layout = get_layout(dataset_layout(data_dir, reader.manifest))
    masks = {name: torch.from_numpy(layout.mask(name)) for name in ("canvas", "toolbar")}

    def encode(x_u8: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(x_u8).permute(0, 3, 1, 2).float().div(255)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return vae.encode(x.contiguous(memory_format=torch.channels_last)).float()

    def reconstruct(x_u8: np.ndarray) -> np.ndarray:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return vae.decode_uint8(encode(x_u8)).numpy()

    rows: dict[str, list[float]] = {"psnr": [], "ssim": [], "canvas": [], "toolbar": [], "density": []}
    for i in tqdm(range(0, len(picks), batch), desc="eval vae", unit="batch"):
        chunk = picks[i : i + batch]
        truth = np.stack([reader.frame(k, t) for k, t in chunk])
        recon = reconstruct(truth)
        a = torch.from_numpy(truth).permute(0, 3, 1, 2).float() / 255
        b = torch.from_numpy(recon).permute(0, 3, 1, 2).float() / 255
        full = ssim_map(a, b, full=True)  # (B, 224, 224); its interior is the map `ssim` averages
        s = full[:, RADIUS:-RADIUS, RADIUS:-RADIUS].mean(dim=(1, 2))
        rows["ssim"] += s.tolist()
        rows["psnr"] += psnr(a, b).tolist()
        for name, m in masks.items():
            rows[name] += masked_mean(full, m).tolist()
        rows["density"] += [float(reader.arrays(k)["density"][t]) for k, t in chunk]

    ssim_all, psnr_all = np.array(rows["ssim"]), np.array(rows["psnr"])
    density = np.array(rows["density"])
    by_density = []
    for lo, hi in zip(DENSITY_BINS[:-1], DENSITY_BINS[1:]):
        sel = (density >= lo) & (density < hi)
        if sel.any():
            by_density.append({"density": [lo, min(hi, 1.0)], "frames": int(sel.sum()),
                               "ssim_mean": float(ssim_all[sel].mean()), "psnr_mean": float(psnr_all[sel].mean())})
    metrics: dict[str, Any] = {
        "model": str(model_dir), "data": str(data_dir), "layout": layout.name, "frames": int(len(ssim_all)),
        "precision": "bf16" if bf16 else "fp32",
        "psnr_mean": float(psnr_all.mean()), "psnr_p5": float(np.percentile(psnr_all, 5)), "psnr_min": float(psnr_all.min()),
        "ssim_mean": float(ssim_all.mean()), "ssim_p5": float(np.percentile(ssim_all, 5)), "ssim_min": float(ssim_all.min()),
        "regions": {name: {"ssim_mean": float(np.mean(rows[name])), "ssim_min": float(np.min(rows[name]))}
                    for name in masks},
        "by_density": by_density,
    }
    metrics["latent_change"] = _latent_change(reader, keys, encode, pairs, KINDS)
    order = np.argsort(ssim_all)
    shown = [int(i) for i in order[:4]] + [int(i) for i in order[len(order) // 2 - 2 : len(order) // 2 + 2]]
    truth = np.stack([reader.frame(*picks[i]) for i in shown])
    _grid(out / "grid.png", truth, reconstruct(truth))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def _latent_change(reader, keys, encode, pairs: int, kinds: tuple[str, ...]) -> dict[str, Any]:
    """Share of significantly changed latent positions between consecutive frames, by step kind."""
    groups = {"stroke": {"draw"}, "erase": {"erase"}, "ui_press": {k for k in kinds if k.startswith("press_")},
              "hover": {"hover", "idle"}}
    shares: dict[str, list[float]] = {g: [] for g in groups}
    zs, labels = [], []
    per_episode = max(2, pairs // len(keys))
    for key in keys:
        arrays = reader.arrays(key)
        kind_names = [kinds[i] for i in arrays["kinds"]]
        # Every UI press of the episode, plus evenly spread other steps.
        ts = [t for t in range(1, len(kind_names)) if kind_names[t].startswith("press_")]
        ts += list(range(1, len(kind_names), max(1, len(kind_names) // per_episode)))
        for t in sorted(set(ts)):
            zs.append(encode(reader.frames(key, t - 1, t + 1)))  # (2, C, 56, 56)
            labels.append(kind_names[t])
    std = torch.stack([z[0] for z in zs]).std(dim=(0, 2, 3)).mean()
    for z, label in zip(zs, labels):
        change = (z[1] - z[0]).abs().amax(dim=0)  # (56, 56)
        share = float((change > SIGNIFICANT * std).float().mean())
        for g, members in groups.items():
            if label in members:
                shares[g].append(share)
    return {"threshold": f"max_c |dz| > {SIGNIFICANT} x mean latent std ({float(std):.4f})",
            **{g: {"pairs": len(v), "mean_share": float(np.mean(v)) if v else None,
                   "p95_share": float(np.percentile(v, 95)) if v else None} for g, v in shares.items()}}


def _grid(path: Path, truth: np.ndarray, recon: np.ndarray) -> None:
    """One row per frame (the worst 4, then 4 typical): truth | reconstruction | difference x4."""
    from PIL import Image

    diff = np.clip(np.abs(truth.astype(np.int16) - recon.astype(np.int16)) * 4, 0, 255).astype(np.uint8)
    rows = np.concatenate([truth, recon, 255 - diff], axis=2)  # (N, 224, 672, 3)
    Image.fromarray(np.concatenate(list(rows), axis=0)).save(path)

