"""Train a dynamics network's toolbar head (`models/toolbar.py`) on a latent cache.

    infinipaint train toolbar --data data/cpu --init-from weights/cpu --out runs/toolbar --mix data/edge

The head needs no pixels and no convolution: its table is the toolbar codes of the cache's frames,
keyed by what Minipaint had selected (`data.latents.selection_labels`), and its classifier learns
each step's next selection from its two actions, against the current one. A step of 1,024
transitions took ~13 ms on this project's 2-core CPU: 3,000 steps in under a minute. Steps that change
the selection, or whose cursor is pressed near the toolbar, are drawn `focus` times more often
than the rest (~10 % of the data). `--mix DIR` adds the episodes of other datasets from their
actions alone, e.g. ones recorded with `--edge-work` (presses just outside the controls, where a
pixel decides). The state is saved every `ckpt_every` steps (`OUT/toolbar/state.pt`, written
atomically) and `--resume` continues from it.
"""

from __future__ import annotations

import json
import math
import pickle
import time
from pathlib import Path

import numpy as np
import torch

from infinipaint.errors import CheckpointError, DataError
from infinipaint.minipaint.layout import LAYOUT
from infinipaint.models.toolbar import ToolbarHead, state_index

NEAR_TOOLBAR = LAYOUT.toolbar_height + 12  # a pressed cursor above this row may act on a control


def transitions(cache: str | Path) -> dict[str, torch.Tensor]:
    """Every transition of a latent cache (see `transitions_of`)."""
    from infinipaint.data.latents import _read_index, selection_labels

    cache = Path(cache)
    return transitions_of(np.load(cache / "actions.npy"), selection_labels(cache), _read_index(cache)["starts"])


def dataset_transitions(data: str | Path, split: str = "train", progress: bool = True) -> dict[str, torch.Tensor]:
    """Every transition of a dataset's split, from its actions alone (no latent cache: what is
    selected is replayed in Minipaint), e.g. episodes recorded with `--edge-work`."""
    from tqdm import tqdm

    from infinipaint.data.latents import replay_selections
    from infinipaint.data.storage import DatasetReader

    reader = DatasetReader(data)
    actions, labels, starts = [], [], [0]
    for key in tqdm(reader.keys(split), desc=f"replay {data} selections", unit="episode", disable=not progress):
        a = reader.arrays(key)["actions"]
        actions.append(a)
        labels.append(replay_selections(a))
        starts.append(starts[-1] + len(a))
    if not actions:
        raise DataError(f"{data}: the {split} split has no episodes")
    return transitions_of(np.concatenate(actions), np.concatenate(labels), starts)


def joined(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The transitions of several sources, one after another."""
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def transitions_of(actions: np.ndarray, labels: np.ndarray, starts: list[int]) -> dict[str, torch.Tensor]:
    """The transitions of episodes stored back to back (actions (N, 3), selection labels (N, 3),
    episode i in rows starts[i]..starts[i+1]-1, its first row the reset): the selected state before
    each (B,), its actions prev and action (B, 3), the parts (tool, colour, size index) selected
    after it (B, 3), and `focus` (B,) bool: the selection changes or a pressed cursor is near the
    toolbar."""
    labels = torch.from_numpy(np.asarray(labels).astype(np.int64))
    actions = torch.from_numpy(np.asarray(actions).astype(np.int64))
    rows = torch.ones(len(actions), dtype=torch.bool)
    rows[torch.tensor(list(starts[:-1]), dtype=torch.long)] = False  # an episode's first row: its reset frame
    rows = rows.nonzero()[:, 0]
    prev, action, target = actions[rows - 1], actions[rows], labels[rows]
    near = lambda a: (a[:, 2] > 0) & (a[:, 1] < NEAR_TOOLBAR)  # noqa: E731
    focus = (target != labels[rows - 1]).any(dim=1) | near(prev) | near(action)
    return {"state": state_index(labels[rows - 1]), "prev": prev, "action": action, "target": target, "focus": focus}


@torch.no_grad()
def fill_table(head: ToolbarHead, cache: str | Path, rows: int, per_state: int = 4) -> int:
    """Record the toolbar codes of `per_state` frames of each selected state in the cache
    (CheckpointError if a state shows two different toolbars); returns how many states never occur."""
    from infinipaint.data.latents import _open_latents, _read_index, selection_labels

    cache = Path(cache)
    labels = selection_labels(cache)
    codes = _open_latents(cache, _read_index(cache))
    index = state_index(torch.from_numpy(labels.astype(np.int64))).numpy()
    rng = np.random.default_rng(0)
    for s in np.unique(index):
        pick = np.sort(rng.choice(np.flatnonzero(index == s), min(per_state, int((index == s).sum())), replace=False))
        clashes = head.fill(torch.from_numpy(np.stack([codes[r, :, :rows] for r in pick])),
                            torch.from_numpy(labels[pick].astype(np.int64)))
        if clashes:
            raise CheckpointError(f"{cache}: selected state {int(s)} shows {clashes} different toolbars; "
                                  "the toolbar head needs a cell-local FSQ encoder")
    return int((~head.seen).sum())


@torch.no_grad()
def accuracy(head: ToolbarHead, data: dict[str, torch.Tensor], batch: int = 8192) -> dict[str, float]:
    """Share of transitions whose next state the head gets wrong: all, the focus ones, and those
    that change the selection; with their counts."""
    head.eval()
    wrong = []
    for i in range(0, len(data["state"]), batch):
        sl = slice(i, i + batch)
        pred = head.next_state(data["state"][sl], data["prev"][sl], data["action"][sl])
        wrong.append(pred != state_index(data["target"][sl]))
    wrong = torch.cat(wrong)
    changes = state_index(data["target"]) != data["state"]
    head.train()
    return {"wrong": float(wrong.float().mean()), "wrong_n": int(wrong.sum()),
            "wrong_focus": float(wrong[data["focus"]].float().mean()), "focus_n": int(data["focus"].sum()),
            "wrong_changes": float(wrong[changes].float().mean()), "changes_n": int(changes.sum())}


def fit(head: ToolbarHead, train: dict[str, torch.Tensor], val: dict[str, torch.Tensor] | None, out: str | Path,
        steps: int = 3000, batch: int = 1024, lr: float = 3e-3, focus: float = 20.0, ckpt_every: int = 500,
        seed: int = 0, resume: bool = False, progress: bool = True) -> dict[str, float]:
    """Train the head's classifier (the table is left as it is); returns the last metrics."""
    from tqdm import tqdm

    state_path = Path(out) / "toolbar" / "state.pt"
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0))))
    start = 0
    if resume and state_path.exists():
        try:
            saved = torch.load(state_path, map_location="cpu", weights_only=True)
            head.load_state_dict(saved["head"])
            optimizer.load_state_dict(saved["optimizer"])
            schedule.load_state_dict(saved["schedule"])
            start = int(saved["step"])
        except (RuntimeError, KeyError, EOFError, OSError, pickle.UnpicklingError) as e:
            raise CheckpointError(f"{state_path}: not a toolbar-head checkpoint of this model ({e})") from None
        print(f"resuming the toolbar head from step {start}")
    generator = torch.Generator().manual_seed(seed + start)
    weights = 1.0 + (focus - 1.0) * train["focus"].float()
    logs: dict[str, float] = {}
    head.train()
    bar = tqdm(range(start, steps), desc="toolbar head", unit="step", disable=not progress, initial=start, total=steps)
    t0 = time.time()
    for step in bar:
        pick = torch.multinomial(weights, batch, replacement=True, generator=generator)
        loss, logs = head.loss(train["state"][pick], train["prev"][pick], train["action"][pick], train["target"][pick])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if (step + 1) % 50 == 0:
            bar.set_postfix(ce=f"{logs['ce']:.4f}", wrong=f"{logs['wrong']:.4f}")
        if (step + 1) % ckpt_every == 0 or step + 1 == steps:
            state_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = state_path.with_suffix(".tmp")
            torch.save({"head": head.state_dict(), "optimizer": optimizer.state_dict(),
                        "schedule": schedule.state_dict(), "step": step + 1}, tmp)
            tmp.replace(state_path)
    metrics = {"steps": steps, "train_seconds": round(time.time() - t0, 1), **{f"train_{k}": v for k, v in logs.items()}}
    if val is not None:
        metrics.update({f"val_{k}": v for k, v in accuracy(head, val).items()})
    (Path(out) / "toolbar" / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
