"""Replay any action file through Minipaint and the world model, with the harness's metrics.

    infinipaint rollout --model weights/cpu --actions session.json [--out rollout] [--raw]
                        [--start FRAME.png] [--save-frames] [--layout column]

    from infinipaint.evaluation.rollout import rollout, read_actions
    metrics = rollout("weights/cpu", "session.json", out="rollout", save_frames=True)

The action file is `{"actions": [[x, y, down], ...]}`: raw pointer events in 224-pixel
coordinates, passed through `ActionStream` (dead zone, 12-px sub-steps, idle step at a release)
unless `--raw`, which takes them as model steps as they are; every value a whole JSON number
(`1` or `1.0`; not `1.5`, `true`, NaN or a string). A file may hold up to `MAX_SAMPLES` entries
(5.6 hours at 80 ms) in `MAX_BYTES`: a longer or bigger one is refused before it is parsed, so a
hostile file cannot take the memory (`infinipaint dream` warns when it saves a longer session).
The truth is Minipaint
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

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from infinipaint.errors import DataError
from infinipaint.minipaint import SCREEN, Layout, Minipaint, MinipaintState, get_layout, validate_action

from .evaluate import Episodes, Keep, load_model, model_info, run
from .scoring import Tracker, read_toolbar


MAX_SAMPLES = 250_000  # entries of an action file: 5.6 hours of 80-ms samples (a 2-hour session has 90,000)
MAX_BYTES = 64 * MAX_SAMPLES + 2**20  # room for 64 bytes an entry (JSON indented 4) and a header


def read_actions(path: str | Path) -> list[tuple[int, int, int]]:
    """Parse and validate an action file; DataError naming the file and the bad entry's index.
    At most MAX_BYTES are read and MAX_SAMPLES entries parsed: a bigger file is refused first."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)  # a bounded read: /dev/zero or a FIFO cannot fill the memory
    except OSError as e:
        raise DataError(f"{path}: cannot read action file ({e.strerror})") from None
    if len(data) > MAX_BYTES:
        raise DataError(f"{path}: more than {MAX_BYTES / 2**20:.0f} MiB, too big for an action file, which holds at "
                        f"most {MAX_BYTES / 2**20:.0f} MiB and {_limit()}: split it")
    if data.count(b"[") > MAX_SAMPLES + 1:  # every entry opens a bracket: count them before parsing
        raise DataError(f"{path}: more than {MAX_SAMPLES:,} entries, too long for an action file, which holds at "
                        f"most {_limit()}: split it")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:  # JSONDecodeError, and integers of over 4,300 digits
        raise DataError(f"{path}: not valid JSON ({e})") from None
    except RecursionError:
        raise DataError(f"{path}: not an action file (JSON nested too deeply)") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("actions"), list):
        raise DataError(f'{path}: expected an object {{"actions": [[x, y, down], ...]}}')
    if not doc["actions"]:
        raise DataError(f"{path}: the action list is empty")
    out = []
    for i, entry in enumerate(doc["actions"]):
        if not isinstance(entry, list):
            raise DataError(f"{path}: entry {i}: expected [x, y, down], got {_show(entry)}")
        # validate_action's rules (whole numbers, 1.0 as 1), but a JSON true, null or string is refused
        bad = [v for v in entry if isinstance(v, bool) or not isinstance(v, (int, float))] if len(entry) == 3 else []
        try:
            if bad:
                raise ValueError(f"values must be whole numbers, got {_show(bad[0])}")
            out.append(validate_action(entry))
        except ValueError as e:
            raise DataError(f"{path}: entry {i} ({_show(entry)}): {e}") from None
    return out


def _limit() -> str:
    """The length limit of an action file, in words."""
    return f"{MAX_SAMPLES:,} samples ({MAX_SAMPLES * 0.08 / 3600:.1f} hours at 80 ms)"


def _show(value: Any, limit: int = 60) -> str:
    """A JSON value for an error message, cut to `limit` characters."""
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
