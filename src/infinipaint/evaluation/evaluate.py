"""The evaluation harness: how long the rolling-latent world model stays faithful (SPEC §6).

    infinipaint evaluate --model runs/dyn/model --data data/cpu [--episodes 20] [--out eval/cpu]
    infinipaint evaluate --model A --model B --data data/cpu --out eval/ab     # A and B on one plot
    infinipaint evaluate --model A --data data/cpu --compare eval/old --out eval/new

    from infinipaint.evaluation.evaluate import evaluate
    metrics = evaluate("weights/cpu", "data/cpu", episodes=20, out="eval/cpu")

Held-out episodes (the `test` split, in key order) are replayed step by step: the truth is the
recorded Minipaint frame (recorded steps are already ActionStream steps), scored on the layout the
dataset was recorded on (its manifest's `layout`, also written to metrics.json); the prediction comes
from a rolling latent started from the encoded first frame, `z <- WorldModel.advance(z, a_prev,
a, origin)` (origin: where the drag under way began, from the actions), decoded at every step. Episodes run as one batch, longest first, so the episodes still alive
at step t are a prefix of the batch and finished ones simply drop out (no padding steps are ever
computed). Only scalars per (episode, step) are kept, plus the few frames the strips and the GIF
show. Ctrl-C stops the loop and still writes everything for the steps already scored
(`"complete": false` in metrics.json). Metric definitions: `scoring.py`. Outputs (report.py):
metrics.json, curves.png, exact.png, regions.png, strips.png, rollout.gif, report.md.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from infinipaint.actions import RESET_ACTION
from infinipaint.errors import CheckpointError, CommandError, DataError
from infinipaint.minipaint import LAYOUTS
from infinipaint.models.encoding import drag_origins

from .scoring import Tracker

STRIP_STEPS = (1, 10, 50, 150, 300, 500, 800, 1000)
GIF_FRAMES = 150  # at most this many frames in rollout.gif


@dataclass
class Episodes:
    """What the harness replays: per episode its steps, step kinds, first frame and a truth source.

    `truth(t, rows)` returns the true frames after step t (1-based) of the episodes `rows`; it is
    called once per step, in order, for the episodes still running. `layout` names the Minipaint
    layout the frames are drawn on."""

    keys: list[str]
    actions: list[np.ndarray]  # (T_e + 1, 3) int, actions[0] = a_prev of step 1
    kinds: list[list[str]]  # (T_e + 1,) KINDS names, kinds[0] unused
    first: np.ndarray  # (E, 224, 224, 3) uint8
    truth: Callable[[int, list[int]], np.ndarray]
    layout: str = "default"  # a key of minipaint.LAYOUTS
    activities: list[list[str]] | None = None  # (T_e + 1,) recorded agent activities (ACTIVITIES names), for behaviour events

    @property
    def lengths(self) -> list[int]:
        return [len(a) - 1 for a in self.actions]


@dataclass
class Keep:
    """Frames kept for the pictures: strip frames of a few episodes, GIF frames of the first."""

    episodes: list[int]
    steps: dict[int, list[int]]
    gif_every: int
    strips: dict[int, dict[int, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    gif: list[tuple[int, np.ndarray, np.ndarray]] = field(default_factory=list)

    @classmethod
    def plan(cls, lengths: list[int], n: int, steps: Sequence[int] | None = None) -> "Keep":
        eps = list(range(min(n, len(lengths))))
        chosen = {}
        for e in eps:
            s = sorted({t for t in (steps or STRIP_STEPS) if 1 <= t <= lengths[e]} | {lengths[e]})
            chosen[e] = s
        every = max(1, -(-lengths[0] // GIF_FRAMES)) if lengths else 1
        return cls(eps, chosen, every)

    def offer(self, step: int, episodes: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> None:
        for i, e in enumerate(episodes.tolist()):
            if e in self.steps and step in self.steps[e]:
                self.strips.setdefault(e, {})[step] = (truth[i].copy(), pred[i].copy())
            if self.episodes and e == self.episodes[0] and (step - 1) % self.gif_every == 0:
                self.gif.append((step, truth[i].copy(), pred[i].copy()))


def pick_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def load_model(model_dir: str | Path, device: str = "auto", bf16: bool | None = None, window: int | None = None,
               keep_margin: float | None = None):
    """A WorldModel; `window`: cells of the dynamics window (None: the model's own, 0: whole map);
    `keep_margin`: see `LatentCNN.step` (None: the model's own)."""
    from infinipaint.models.world_model import WorldModel

    check_model_dir(model_dir)
    return WorldModel.load(model_dir, device=pick_device(device), bf16=bf16, window=window, keep_margin=keep_margin)


def model_info(model_dir: str | Path, wm: Any) -> dict[str, Any]:
    from infinipaint.models.checkpoint import read_info

    info: dict[str, Any] = {"dir": str(model_dir), "device": str(wm.device), "bf16": bool(wm.bf16),
                            "window": int(wm.window), "keep_margin": float(wm.dynamics.config.keep_margin)}
    for name in ("vae", "dynamics"):
        i = read_info(model_dir, name)
        info[name] = {"config": i["config"], "sha256": i["weights"]["sha256"], "meta": i.get("meta", {})}
    return info


def run(wm: Any, eps: Episodes, tracker: Tracker, keep: Keep | None = None, ceiling_every: int = 1,
        progress: bool = True, on_step: Callable[[int, np.ndarray, np.ndarray, np.ndarray], None] | None = None,
        desc: str = "evaluate") -> int:
    """Replay all episodes in one batch; returns the number of steps done (the longest episode's)."""
    from tqdm import tqdm

    lengths = np.asarray(eps.lengths)
    order = np.argsort(-lengths, kind="stable")  # longest first: the alive episodes are a prefix
    sorted_len = lengths[order]
    actions = [torch.from_numpy(np.asarray(eps.actions[e], dtype=np.int64)) for e in order]
    z = wm.encode(eps.first[order])
    origins = [torch.from_numpy(drag_origins(a.numpy())) for a in actions]  # where each step's drag began
    prev_truth = eps.first[order].copy()
    prev_pred = wm.decode(z)
    t_max = int(sorted_len.max()) if len(lengths) else 0
    bar = tqdm(total=t_max, desc=desc, unit="step", disable=not progress, file=sys.stderr)
    t = 0
    try:
        for t in range(1, t_max + 1):
            n = int((sorted_len >= t).sum())
            rows = order[:n]
            prev = torch.stack([actions[i][t - 1] for i in range(n)])  # (n, 3)
            act = torch.stack([actions[i][t] for i in range(n)])
            origin = torch.stack([origins[i][t] for i in range(n)])
            z = wm.advance(z[:n], prev, act, origin)  # (n, C, 56, 56)
            pred = wm.decode(z)  # (n, 224, 224, 3)
            truth = eps.truth(t, rows.tolist())
            ceiling = wm.decode(wm.encode(truth)) if ceiling_every and (t - 1) % ceiling_every == 0 else None
            kinds = [eps.kinds[e][t] for e in rows]
            acts = None if eps.activities is None else [eps.activities[e][t] for e in rows]
            s = tracker.update(t, rows, kinds, prev_truth[:n], truth, prev_pred[:n], pred, ceiling, acts)
            if keep is not None:
                keep.offer(t, rows, truth, pred)
            if on_step is not None:
                on_step(t, rows, truth, pred)
            prev_truth, prev_pred = truth, pred
            bar.update(1)
            bar.set_postfix(ssim=f"{float(np.mean(s['ssim'])):.3f}", episodes=n)
    finally:
        bar.close()
    return t


# ----------------------------------------------------------------------------------- dataset
def dataset_layout(data_dir: str | Path, manifest: dict[str, Any]) -> str:
    """The name of the layout a dataset's manifest records ("default" when it names none);
    DataError when Minipaint has no such layout."""
    from infinipaint.data.storage import layout_of

    layout = layout_of(manifest)
    if layout not in LAYOUTS:
        raise DataError(f"{data_dir}: recorded on layout {layout!r}, which Minipaint does not know "
                        f"(known: {', '.join(LAYOUTS)})")
    return layout


def dataset_episodes(data_dir: str | Path, episodes: int = 20, split: str = "test",
                     max_steps: int | None = None) -> Episodes:
    """The first `episodes` episodes of a split of a dataset, truth read from its recorded frames,
    on the layout its manifest records."""
    from infinipaint.data.agents import ACTIVITIES, KINDS
    from infinipaint.data.storage import DatasetReader

    if episodes < 1:
        raise CommandError(f"--episodes must be >= 1, got {episodes}")
    reader = DatasetReader(data_dir)
    layout = dataset_layout(data_dir, reader.manifest)
    keys = reader.keys(None if split == "all" else split)
    if not keys:
        raise DataError(f"{data_dir}: the {split} split is empty ({reader.manifest['n_episodes']} episodes in all); "
                        "generate more episodes")
    keys = keys[:episodes]
    actions, kinds, activities = [], [], []
    for k in keys:
        a = reader.arrays(k)
        stop = len(a["actions"]) if max_steps is None else min(len(a["actions"]), max_steps + 1)
        actions.append(a["actions"][:stop].astype(np.int64))
        kinds.append([KINDS[int(i)] for i in a["kinds"][:stop]])
        activities.append([ACTIVITIES[int(i)] for i in a["activities"][:stop]])
    first = np.stack([reader.frame(k, 0) for k in keys])

    def truth(t: int, rows: list[int]) -> np.ndarray:
        return np.stack([reader.frame(keys[e], t) for e in rows])

    if any(len(a) < 2 for a in actions):
        raise DataError(f"{data_dir}: an episode of the {split} split has no steps")
    if any(tuple(a[0]) != RESET_ACTION for a in actions):
        raise DataError(f"{data_dir}: episodes must start with the reset action {RESET_ACTION}")
    return Episodes(keys, actions, kinds, first, truth, layout, activities)


def evaluate(model_dir: str | Path, data_dir: str | Path, episodes: int = 20, out: str | Path = "eval",
             split: str = "test", max_steps: int | None = None, ceiling_every: int = 1,
             strip_episodes: int = 3, strip_steps: Sequence[int] | None = None, device: str = "auto",
             bf16: bool | None = None, progress: bool = True, label: str | None = None,
             window: int | None = None, keep_margin: float | None = None) -> dict[str, Any]:
    """Evaluate one world model on held-out episodes; write metrics.json, plots, strips, GIF and
    report.md to `out`; return the metrics. On KeyboardInterrupt, write what was scored, re-raise."""
    from . import report

    wm = load_model(model_dir, device, bf16, window, keep_margin)
    eps = dataset_episodes(data_dir, episodes, split, max_steps)
    tracker = Tracker(eps.lengths, eps.layout)
    keep = Keep.plan(eps.lengths, strip_episodes, strip_steps)
    started = time.perf_counter()
    interrupted = False
    try:
        run(wm, eps, tracker, keep, ceiling_every=ceiling_every, progress=progress)
    except KeyboardInterrupt:
        interrupted = True
    metrics = tracker.summary()
    metrics.update({
        "model": {**model_info(model_dir, wm), "label": label or Path(model_dir).name},
        "data": {"dir": str(data_dir), "split": split, "episodes": eps.keys, "lengths": eps.lengths,
                 "max_steps": max_steps},
        "complete": not interrupted,
        "wall_s": time.perf_counter() - started,
        "settings": {"ceiling_every": ceiling_every, "torch_threads": torch.get_num_threads()},
    })
    report.write_all(out, metrics, keep, title=f"Evaluation of {metrics['model']['label']}")
    if interrupted:
        print(f"interrupted after step {len(metrics['steps'])}: partial results written to {out}", file=sys.stderr)
        raise KeyboardInterrupt
    return metrics


def evaluate_many(model_dirs: Sequence[str | Path], data_dir: str | Path, out: str | Path = "eval",
                  compare: Sequence[str | Path] = (), **kwargs: Any) -> list[dict[str, Any]]:
    """Evaluate several models (each into out/<label>) and/or add saved results (DIR/metrics.json);
    with more than one in all, write their curves on shared axes to out/compare.png + compare.md."""
    from . import report

    labels = _labels([Path(m).name or str(m) for m in model_dirs])
    results = []
    if len(model_dirs) == 1 and not compare:
        return [evaluate(model_dirs[0], data_dir, out=out, label=labels[0], **kwargs)]
    for m, label in zip(model_dirs, labels):
        results.append(evaluate(m, data_dir, out=Path(out) / label, label=label, **kwargs))
    for d in compare:
        m = load_metrics(d)
        if any(r["model"]["label"] == m["model"]["label"] for r in results):  # e.g. weights/cpu vs its old results
            m["model"]["label"] += f" ({'/'.join(Path(d).parts[-2:])})"
        results.append(m)
    report.write_comparison(out, results)
    return results


def load_metrics(directory: str | Path) -> dict[str, Any]:
    path = Path(directory)
    path = path if path.suffix == ".json" else path / "metrics.json"
    try:
        m = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read evaluation results ({e})") from None
    if not isinstance(m, dict) or "ssim_mean" not in m or "steps" not in m:
        raise DataError(f"{path}: not an evaluation metrics.json")
    m.setdefault("model", {}).setdefault("label", path.parent.name)
    return m


def _labels(names: list[str]) -> list[str]:
    out = []
    for i, n in enumerate(names):
        out.append(n if names.count(n) == 1 else f"{n}-{i + 1}")
    return out


def check_model_dir(model_dir: str | Path) -> None:
    """A clear error before any work when the model directory is incomplete."""
    from infinipaint.models.checkpoint import model_folder

    d = Path(model_dir)
    if not d.is_dir():
        raise CheckpointError(f"{d}: no such model directory")
    d = model_folder(d, "dynamics")
    missing = [f for f in ("vae.json", "vae.safetensors", "dynamics.json", "dynamics.safetensors") if not (d / f).is_file()]
    if missing:
        raise CheckpointError(f"{d}: not a complete world model, missing {', '.join(missing)} "
                              "(train dynamics writes one to runs/NAME/model)")
