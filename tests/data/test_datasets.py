"""PyTorch datasets: shapes, alignment with the episodes, lazy per-worker shard opening."""

import pickle
import os

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from infinipaint.data.datasets import FrameDataset, TransitionDataset
from infinipaint.data.storage import DatasetReader


def test_frame_dataset_covers_every_frame_of_the_split(tiny_dataset):
    r = DatasetReader(tiny_dataset)
    ds = FrameDataset(tiny_dataset, "train")
    keys = r.keys("train")
    assert len(ds) == sum(r.steps(k) + 1 for k in keys)
    x = ds[0]
    assert x.shape == (3, 224, 224) and x.dtype == torch.uint8
    np.testing.assert_array_equal(x.permute(1, 2, 0).numpy(), r.frame(keys[0], 0))
    last = ds[len(ds) - 1]
    np.testing.assert_array_equal(last.permute(1, 2, 0).numpy(), r.frame(keys[-1], r.steps(keys[-1])))
    assert torch.equal(ds[-1], last)
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_transition_windows_are_aligned(tiny_dataset):
    r = DatasetReader(tiny_dataset)
    k = 3
    ds = TransitionDataset(tiny_dataset, "train", k=k)
    keys = r.keys("train")
    assert len(ds) == sum(r.steps(key) + 1 - k for key in keys)
    key = keys[1]
    i = r.steps(keys[0]) + 1 - k + 5  # episode 2 of the split, window starting at t = 5
    item = ds[i]
    assert item["frames"].shape == (k + 1, 3, 224, 224) and item["actions"].shape == (k + 1, 3)
    np.testing.assert_array_equal(item["frames"].permute(0, 2, 3, 1).numpy(), r.frames(key, 5, 5 + k + 1))
    np.testing.assert_array_equal(item["actions"].numpy(), r.arrays(key)["actions"][5 : 5 + k + 1])
    with pytest.raises(ValueError):
        TransitionDataset(tiny_dataset, "train", k=0)


def test_dataloader_workers_open_shards_lazily(tiny_dataset):
    ds = TransitionDataset(tiny_dataset, "train", k=1)
    assert ds.reader._shards == {}  # nothing opened in the parent
    pickle.loads(pickle.dumps(ds))  # spawn-safe
    loader = DataLoader(ds, batch_size=8, num_workers=2, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    batch = next(iter(loader))
    assert batch["frames"].shape == (8, 2, 3, 224, 224) and batch["frames"].dtype == torch.uint8
    assert ds.reader._shards == {}


def test_single_frame_reads_decode_one_frame_and_cached_shards_read_no_file(tiny_dataset, monkeypatch):
    from infinipaint.data import storage

    ds = FrameDataset(tiny_dataset, "train", cache=True)
    idx = np.random.default_rng(0).integers(0, len(ds), 50)
    for i in idx:  # opens the shards: with cache=True each is read into memory once, here
        ds[int(i)]
    blobs, preads = [], []
    real_blob, real_pread = storage.ShardReader._blob, os.pread
    monkeypatch.setattr(storage.ShardReader, "_blob", lambda self, i: blobs.append(i) or real_blob(self, i))
    monkeypatch.setattr(os, "pread", lambda *a: preads.append(a[1:]) or real_pread(*a))
    frames = [ds[int(i)] for i in idx]
    assert len(blobs) == len(idx) and preads == []  # one compressed frame each, no I/O
    assert all(f.shape == (3, 224, 224) for f in frames)
