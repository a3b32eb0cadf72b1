"""The world model through onnxruntime on the CPU, without torch: an `infinipaint export onnx` folder.

    infinipaint rollout --backend onnx --model out/onnx --actions session.json [--out rollout] [--save-frames]

    from infinipaint.onnx_backend import OnnxWorldModel
    wm = OnnxWorldModel.load("out/onnx")
    frame = wm.reset(first_frame)              # uint8 (224, 224, 3)
    frame = wm.step((100, 120, 1))             # one ActionStream step
    frames = wm.rollout(first_frames, steps)   # (B, 224, 224, 3), (B, T, 3) -> (B, T, 224, 224, 3)

The same interface as `WorldModel` where it matters (reset, step, rollout; encode, decode, advance
on numpy arrays), the graphs of `infinipaint.export` doing the work. Nothing here imports torch
(tested): the folder and onnxruntime are all it needs. A step decodes only around the cells it
changed, as `WorldModel.step` does (`infinipaint.models.stepping`).

The folder is checked before a session is made: model.json of the right format and version with
its fields, and the three graphs present with the sizes and sha256 it names (CheckpointError
otherwise, also for a graph onnxruntime cannot load).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from infinipaint.errors import CheckpointError, DataError
from infinipaint.export import FORMAT, FORMAT_FILE, GRAPHS, VERSION, _sha256
from infinipaint.models.stepping import check_step, redraw_box


def read_export(directory: str | Path) -> dict[str, Any]:
    """model.json of an ONNX export, after checking it and every file it names."""
    directory = Path(directory)
    path = directory / FORMAT_FILE
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no such folder (an `infinipaint export onnx` folder)")
    if not path.is_file():
        hint = (" it holds a PyTorch model: export it first with `infinipaint export onnx --model "
                f"{directory} --out DIR`" if (directory / "dynamics.json").exists() else "")
        raise CheckpointError(f"{directory}: no {FORMAT_FILE}, not an ONNX export;{hint or ' run `infinipaint export onnx`'}")
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{path}: not readable JSON ({e})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an Infinipaint ONNX export (format {info.get('format') if isinstance(info, dict) else None!r})")
    if info.get("version") != VERSION:
        raise CheckpointError(f"{path}: export version {info.get('version')!r}; this Infinipaint reads version {VERSION}: "
                              "export the model again")
    kinds = {"screen": int, "grid": int, "latent_channels": int, "reset_action": list, "reset_origin": list,
             "files": dict, "graphs": dict, "source": dict}
    bad = [k for k, kind in kinds.items() if not isinstance(info.get(k), kind)]
    if bad or len(info["reset_action"]) != 3 or len(info["reset_origin"]) != 2:
        raise CheckpointError(f"{path}: malformed ({', '.join(bad) or 'reset_action / reset_origin'} missing or of the wrong "
                              "type): export the model again")
    files = info["files"]
    for name in (f"{g}.onnx" for g in GRAPHS):
        file, want = directory / name, files.get(name)
        if not isinstance(want, dict):
            raise CheckpointError(f"{path}: names no {name}")
        if not file.is_file():
            raise CheckpointError(f"{file}: missing")
        if file.stat().st_size != want.get("bytes") or _sha256(file) != want.get("sha256"):
            raise CheckpointError(f"{file}: not the file model.json names (size or sha256 differ): truncated or replaced")
    return info


class OnnxWorldModel:
    def __init__(self, directory: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.directory = Path(directory)
        self.info = read_export(self.directory)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        options.log_severity_level = 3  # errors only
        self.sessions = {}
        for g in GRAPHS:
            try:
                self.sessions[g] = ort.InferenceSession(str(self.directory / f"{g}.onnx"), options,
                                                        providers=["CPUExecutionProvider"])
            except Exception as e:  # onnxruntime's own errors: a graph it cannot load
                raise CheckpointError(f"{self.directory / g}.onnx: not a loadable ONNX graph ({e})") from None
        self.screen = int(self.info["screen"])
        self.reset_action = tuple(int(v) for v in self.info["reset_action"])
        self.reset_origin = np.asarray([self.info["reset_origin"]], dtype=np.int64)
        self.latent: np.ndarray | None = None
        self.frame: np.ndarray | None = None
        self.prev_action = self.reset_action
        self.origin = self.reset_origin

    @classmethod
    def load(cls, directory: str | Path, threads: int | None = None) -> "OnnxWorldModel":
        return cls(directory, threads)

    def _check_frames(self, frames: np.ndarray, ndim: int) -> np.ndarray:
        s = self.screen
        if (not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != ndim
                or frames.shape[-3:] != (s, s, 3) or frames.size == 0):
            got = f"{frames.dtype} {frames.shape}" if isinstance(frames, np.ndarray) else type(frames).__name__
            raise ValueError(f"frames must be uint8 {'(B, ' if ndim == 4 else '('}{s}, {s}, 3), got {got}")
        return np.ascontiguousarray(frames)

    # ------------------------------------------------------------------------------ graphs
    def encode(self, frames: np.ndarray) -> np.ndarray:
        """uint8 (B, 224, 224, 3) -> latent float32 (B, C, 56, 56)."""
        return self.sessions["encoder"].run(None, {"frames": self._check_frames(frames, 4)})[0]

    def decode(self, latent: np.ndarray) -> np.ndarray:
        """latent float32 (B, C, h, w), the whole latent or a window of it -> uint8 (B, 4h, 4w, 3)."""
        return self.sessions["decoder"].run(None, {"latent": np.ascontiguousarray(latent, dtype=np.float32)})[0]

    def advance(self, latent: np.ndarray, prev: Sequence[int], action: Sequence[int],
                origin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One step of one sample: latent (1, C, 56, 56), the previous and this step, the drag
        origin as of `prev` (1, 2) -> (next latent, the origin as of `action`)."""
        feeds = {"latent": np.ascontiguousarray(latent, dtype=np.float32),
                 "prev": np.asarray([prev], dtype=np.int64), "action": np.asarray([action], dtype=np.int64),
                 "origin": np.asarray(origin, dtype=np.int64).reshape(1, 2)}
        nxt, origin = self.sessions["step"].run(None, feeds)
        return nxt, origin

    # -------------------------------------------------------------------------- interactive
    def reset(self, frame: np.ndarray) -> np.ndarray:
        """Start from a frame (uint8 (224, 224, 3)); returns the decoded frame."""
        self.latent = self.encode(self._check_frames(frame, 3)[None])
        self.prev_action, self.origin = self.reset_action, self.reset_origin
        self.frame = self.decode(self.latent)[0]
        return self.frame.copy()

    def step(self, action: Sequence[int]) -> np.ndarray:
        """Advance by one ActionStream step and return the decoded frame."""
        if self.latent is None:
            raise RuntimeError("call reset(frame) before step()")
        action = check_step(action, self.screen)
        nxt, self.origin = self.advance(self.latent, self.prev_action, action, self.origin)
        self.frame = self._redraw(self.latent, nxt)
        self.latent, self.prev_action = nxt, action
        return self.frame.copy()

    def _redraw(self, old: np.ndarray, new: np.ndarray) -> np.ndarray:
        """The frame of latent `new`, given `self.frame` = the frame of `old`: with a local decoder
        only the cells around those that changed are decoded (`models.stepping`, as `WorldModel.step`)."""
        r, n = self.info.get("decode_radius"), new.shape[-1]
        if r is None or self.frame is None:
            return self.decode(new)[0]
        ys, xs = np.nonzero((new != old).any(axis=1)[0])
        if len(ys) == 0:
            return self.frame
        box = redraw_box((int(ys.min()), int(ys.max())), (int(xs.min()), int(xs.max())), int(r), n)
        if box is None:
            return self.decode(new)[0]
        (py0, py1, px0, px1), (wy0, wy1, wx0, wx1) = box
        tile = self.decode(new[:, :, wy0:wy1, wx0:wx1])[0]
        s = self.screen // n
        frame = self.frame.copy()
        frame[py0 * s : py1 * s, px0 * s : px1 * s] = tile[(py0 - wy0) * s : (py1 - wy0) * s, (px0 - wx0) * s : (px1 - wx0) * s]
        return frame

    def rollout(self, first_frames: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """first frames (B, 224, 224, 3), steps (B, T, 3) -> frames (B, T, 224, 224, 3), episode by episode."""
        first_frames = self._check_frames(first_frames, 4)
        actions = np.asarray(actions)
        if actions.ndim != 3 or actions.shape[-1] != 3 or len(actions) != len(first_frames):
            raise ValueError(f"actions must be (B, T, 3) for {len(first_frames)} first frames, got {actions.shape}")
        for episode in actions:  # every step checked before any work
            for a in episode:
                check_step(a, self.screen)
        out = np.empty((*actions.shape[:2], self.screen, self.screen, 3), dtype=np.uint8)
        for b in range(len(first_frames)):
            self.reset(first_frames[b])
            for t, a in enumerate(actions[b]):
                out[b, t] = self.step(a)
        return out


def rollout_onnx(model_dir: str | Path, actions_file: str | Path, out: str | Path = "rollout", raw: bool = False,
                 save_frames: bool = False, layout: str = "default", threads: int | None = None,
                 progress: bool = True) -> dict[str, Any]:
    """Replay an action file through Minipaint on `layout` and the exported model; write
    metrics.json (per step: the share of exact pixels and PSNR against Minipaint, and the time
    of each model step) and with `save_frames` frames.npz (uint8 `truth`, `pred`); return the metrics."""
    from tqdm import tqdm

    from infinipaint.action_files import read_actions
    from infinipaint.actions import ActionStream
    from infinipaint.files import atomic_write
    from infinipaint.minipaint import Minipaint

    events = read_actions(actions_file)
    steps = events if raw else ActionStream.process(events)
    if not steps:
        raise DataError(f"{actions_file}: the events produce no model steps (all inside the dead zone?)")
    wm = OnnxWorldModel.load(model_dir, threads)
    app = Minipaint(layout)
    wm.reset(app.reset())
    exact, psnr, times, truths, preds = [], [], [], [], []
    for step in tqdm(steps, desc="rollout (onnx)", unit="step", disable=not progress, file=sys.stderr):
        truth = app.step(step)
        started = time.perf_counter()
        pred = wm.step(step)
        times.append(time.perf_counter() - started)
        exact.append(float((pred == truth).all(axis=-1).mean()))
        mse = float(np.mean((pred.astype(np.float64) - truth) ** 2))
        psnr.append(100.0 if mse == 0 else float(10 * np.log10(255.0**2 / mse)))
        if save_frames:
            truths.append(truth)
            preds.append(pred)
    metrics = {
        "backend": "onnx", "steps": list(range(1, len(steps) + 1)), "exact_share": exact, "psnr": psnr,
        "step_ms": [1000 * t for t in times], "actions": [list(s) for s in steps],
        "model": {"dir": str(model_dir), **{k: wm.info.get(k) for k in ("source", "window", "keep_margin", "exported")}},
        "data": {"actions": str(actions_file), "raw": raw, "events": len(events), "layout": app.layout.name},
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "metrics.json", (json.dumps(metrics) + "\n").encode())
    if save_frames:
        np.savez_compressed(out / "frames.npz", truth=np.stack(truths), pred=np.stack(preds))
    return metrics
