"""PyTorch datasets over a generated dataset directory.

    from torch.utils.data import DataLoader
    from infinipaint.data.datasets import FrameDataset, TransitionDataset
    frames = FrameDataset("data/cpu", "train")           # item: uint8 (3, 224, 224)
    windows = TransitionDataset("data/cpu", "train", k=4)
    item = windows[0]   # {"frames": uint8 (K+1, 3, 224, 224), "actions": int64 (K+1, 3)}
    loader = DataLoader(windows, batch_size=32, shuffle=True, num_workers=2)

Frames are channels-first uint8 tensors (divide by 255 yourself). A window starting at t holds
`frames[t:t+K+1]` and `actions[t:t+K+1]` of one episode: `actions[0]` of the window is `a_prev` of
its first transition and `actions[j+1]` produced `frames[j+1]` (storage convention: `actions[0]`
of an episode is the pointer before its first step). Every start 0 <= t <= T - K is an item, episodes never mix.

Only the manifest is read at construction; shard files are opened lazily by the process that
reads them (each DataLoader worker opens its own). One frame costs one pread and one zstd decode
(~0.1 ms). `cache=True` reads each shard file whole into the worker's RAM on first use (the OS
page cache usually does as well).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from infinipaint.data.storage import DatasetReader


class _EpisodeIndex:
    """Flat item index -> (episode key, offset) over the episodes of one split."""

    def __init__(self, reader: DatasetReader, split: str, per_episode) -> None:
        self.keys = reader.keys(split)
        counts = np.array([max(0, per_episode(reader.steps(k))) for k in self.keys], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(counts)])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def locate(self, i: int) -> tuple[str, int]:
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        e = int(np.searchsorted(self.starts, i, side="right")) - 1
        return self.keys[e], i - int(self.starts[e])


class FrameDataset(Dataset):
    """Every frame (reset frame included) of the episodes of one split: uint8 (3, 224, 224)."""

    def __init__(self, root: str | Path, split: str = "train", cache: bool = False) -> None:
        self.reader = DatasetReader(root, cache=cache)
        self.index = _EpisodeIndex(self.reader, split, lambda steps: steps + 1)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> torch.Tensor:
        key, t = self.index.locate(i)
        return torch.from_numpy(self.reader.frame(key, t)).permute(2, 0, 1)  # (3, 224, 224)


class TransitionDataset(Dataset):
    """Windows of K transitions: frames[t:t+K+1] with actions[t:t+K+1] of one episode."""

    def __init__(self, root: str | Path, split: str = "train", k: int = 1, cache: bool = False) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = k
        self.reader = DatasetReader(root, cache=cache)
        self.index = _EpisodeIndex(self.reader, split, lambda steps: steps + 1 - k)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        key, t = self.index.locate(i)
        arrays = self.reader.arrays(key)
        frames = self.reader.frames(key, t, t + self.k + 1)  # (K+1, 224, 224, 3)
        return {
            "frames": torch.from_numpy(frames).permute(0, 3, 1, 2),  # (K+1, 3, 224, 224)
            "actions": torch.from_numpy(arrays["actions"][t : t + self.k + 1].astype(np.int64)),  # (K+1, 3)
        }
