"""Replay any action file through Minipaint and the world model, with the harness's metrics.

    infinipaint rollout --model weights/cpu --actions session.json [--out rollout] [--raw]
                        [--start FRAME.png] [--save-frames] [--layout column]

    from infinipaint.evaluation.rollout import rollout, read_actions
    metrics = rollout("weights/cpu", "session.json", out="rollout", save_frames=True)

The action file is `{"actions": [[x, y, down], ...]}`: raw pointer events in 224-pixel
coordinates, passed through `ActionStream` (dead zone, 12-px sub-steps, idle step at a release)
unless `--raw`, which takes them as model steps as they are; every value a whole JSON number
(`1` or `1.0`; not `1.5`, `true`, NaN or a string), read with bounds (`infinipaint.action_files`).
With `--backend onnx` the model is an ONNX export run by onnxruntime, without torch
(`infinipaint.onnx_backend`). The truth is Minipaint
on `--layout` (default "default"; every score is taken on that layout, named in metrics.json) stepped with those
steps, the prediction the WorldModel's rolling latent (the first frame encoded once, then
`advance` and `decode` per step: what `WorldModel.reset`/`step` do in the viewer). `metrics.json` has the evaluation's per-step keys
(`steps`, `ssim_mean`, `psnr_mean`, `exact_share`, `ceiling_*`, ... with std 0 for one episode),
plus `ssim` / `psnr` aliases, the steps themselves and the behaviour tables. With `--save-frames`,
`frames.npz` holds uint8 `truth` and `pred` (T, 224, 224, 3); row i belongs to `steps[i]`, i.e. the
frame after step i + 1.

`--start FRAME.png`: Minipaint cannot load a picture, but it can restore a screen. The PNG must be
a 224x224 RGB Minipaint screen of that layout: its toolbar is read exactly against the toolbars
Minipaint renders there for every (tool, colour, size), Minipaint is restored to that screen and
state (cursor and button as after a reset), and the world model starts from the same frame. A PNG
whose toolbar is not exactly a Minipaint toolbar of that layout is refused: there would be no
ground truth to compare against.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from infinipaint.action_files import read_actions
from infinipaint.errors import DataError
from infinipaint.minipaint import SCREEN, Layout, Minipaint, MinipaintState, get_layout

from .evaluate import Episodes, Keep, load_model, model_info, run
from .scoring import Tracker, read_toolbar


def read_start(path: str | Path, layout: str | Layout = "default") -> tuple[np.ndarray, MinipaintState]:
    """A start screen PNG -> (frame (224, 224, 3) uint8, the Minipaint state its toolbar shows on
    `layout`)."""
    from PIL import Image

    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            mode, size = img.mode, img.size
            frame = np.asarray(img.convert("RGB") if mode == "RGB" else img)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read image ({e})") from None
    if mode != "RGB" or size != (SCREEN, SCREEN):
        raise DataError(f"{path}: must be a {SCREEN}x{SCREEN} RGB image, got {size[0]}x{size[1]} {mode}")
    (state,), dist = read_toolbar(frame[None], layout)
    if dist[0] != 0:
        raise DataError(f"{path}: the toolbar is not a Minipaint toolbar of layout {get_layout(layout).name!r} "
                        f"(nearest state {state}, mean squared error {dist[0]:.1f}); Minipaint cannot be started "
                        "from it, so there is no ground truth")
    tool, color, size_ = state
    return np.ascontiguousarray(frame, dtype=np.uint8), MinipaintState(tool=tool, color=color, size=size_)


def start_minipaint(start: str | Path | None, layout: str | Layout = "default") -> tuple[Minipaint, np.ndarray]:
    """A fresh Minipaint on `layout`, or one restored to the start PNG; returns it and its frame."""
    import pygame

    from infinipaint.minipaint import Snapshot

    app = Minipaint(layout)
    if start is None:
        return app, app.reset()
    frame, state = read_start(start, app.layout)
    surface = pygame.Surface((SCREEN, SCREEN))  # the same pixel format as Minipaint's own screen
    surface.blit(pygame.image.frombuffer(frame.tobytes(), (SCREEN, SCREEN), "RGB"), (0, 0))
    restored = app.restore(Snapshot(state, surface))
    if not np.array_equal(restored, frame):  # cannot happen for a PNG that passed read_start
        raise DataError(f"{start}: Minipaint could not reproduce this screen")
    return app, restored


def rollout(model_dir: str | Path, actions_file: str | Path, out: str | Path = "rollout", raw: bool = False,
            start: str | Path | None = None, save_frames: bool = False, device: str = "auto", bf16: bool | None = None,
            progress: bool = True, window: int | None = None, keep_margin: float | None = None,
            layout: str | Layout = "default") -> dict[str, Any]:
    """Replay an action file through Minipaint on `layout` and the model; write metrics.json,
    plots, a strip, a GIF and report.md (and frames.npz) to `out`; return the metrics."""
    from infinipaint.actions import ActionStream
    from infinipaint.data.agents import step_kind

    from . import report

    events = read_actions(actions_file)
    steps = events if raw else ActionStream.process(events)
    if not steps:
        raise DataError(f"{actions_file}: the events produce no model steps (all inside the dead zone?)")
    wm = load_model(model_dir, device, bf16, window, keep_margin)
    app, first = start_minipaint(start, layout)
    # the first step's a_prev: the pointer the model assumes before any step (as `WorldModel.step`)
    actions = np.asarray([wm.reset_action, *steps], dtype=np.int64)
    kinds = ["reset"]
    truths: list[np.ndarray] = []

    def truth(t: int, rows: list[int]) -> np.ndarray:
        step = tuple(int(v) for v in actions[t])
        kinds.append(step_kind(app, *step))
        return app.step(step)[None]

    # Kinds are known only as Minipaint runs: the harness reads kinds[t] after truth(t), so a
    # list that grows in step is enough.
    eps = Episodes(["rollout"], [actions], [kinds], first[None], truth, app.layout.name)
    tracker = Tracker(eps.lengths, eps.layout)
    keep = Keep.plan(eps.lengths, 1)
    preds: list[np.ndarray] = []

    def collect(t: int, rows: np.ndarray, truth_frames: np.ndarray, pred: np.ndarray) -> None:
        if save_frames:
            truths.append(truth_frames[0])
            preds.append(pred[0])

    started = time.perf_counter()
    interrupted = False
    try:
        run(wm, eps, tracker, keep, progress=progress, on_step=collect, desc="rollout")
    except KeyboardInterrupt:
        interrupted = True
    metrics = tracker.summary()
    metrics["ssim"], metrics["psnr"] = metrics["ssim_mean"], metrics["psnr_mean"]
    metrics.update({
        "actions": [list(map(int, a)) for a in actions[1 : len(metrics["steps"]) + 1]],
        "kinds": kinds[1 : len(metrics["steps"]) + 1],
        "model": {**model_info(model_dir, wm), "label": Path(model_dir).name},
        "data": {"actions": str(actions_file), "raw": raw, "events": len(events), "start": str(start) if start else None,
                 "episodes": ["rollout"], "lengths": eps.lengths},
        "complete": not interrupted,
        "wall_s": time.perf_counter() - started,
    })
    out = Path(out)
    report.write_all(out, metrics, keep, title=f"Rollout of {Path(actions_file).name} with {metrics['model']['label']}")
    if save_frames and metrics["steps"]:
        n = len(metrics["steps"])
        np.savez_compressed(out / "frames.npz", truth=np.stack(truths[:n]), pred=np.stack(preds[:n]))
    if interrupted:
        print(f"interrupted after step {len(metrics['steps'])}: partial results written to {out}", file=sys.stderr)
        raise KeyboardInterrupt
    return metrics
