"""The viewer's inference thread: world-model steps off the UI thread, through a bounded queue.

    worker = InferenceWorker(world_model, bound=64)
    worker.reset(first_frame)              # epoch += 1; drops queued steps of the old epoch
    worker.submit([(100, 120, 1), ...])    # False (nothing queued) if the steps do not fit
    for r in worker.poll():                # complete results, in step order
        show(r.frame)
    worker.close()

One thread owns the WorldModel; the UI thread never touches it. Jobs (a reset, then steps) go
through a deque bounded to `bound` steps: `submit` takes all of a sample's steps or none, so a
sample is never half applied, and with `block=True` it waits for room instead. Each finished job
comes back as one `Result` holding a complete decoded frame and its diagnostics, so the UI shows
whole frames only and never blocks on the model. Results carry the epoch of the reset they
follow; the UI ignores those of an earlier epoch (steps that were running when it reset).

The worker sets its own torch thread count (`threads`, default 1; 0 = PyTorch's default): torch's
intra-op pool size is per calling thread, so this does not change the UI thread's. On this 2-core
CPU one thread was faster (and leaves a core to the UI). bf16 kernels may round differently with
another thread count, so bit-exact comparisons (`rollout --threads 1`) use the same count.

Frames of a session. Each result carries its frame packed for keeping (`Result.packed`, made here
so the UI thread does not spend its time compressing): zlib of the XOR with the previous frame of
the epoch (a step changes a few cells: ~1 KB), or of the frame itself for a key frame (the reset
frame, then every `KEY_EVERY` steps). `FrameStore` keeps them in an unlinked temp file, so a
session's memory does not grow with its frames (8 bytes each for the index); it hands frames back
in order at the cost of one decompression each, and any frame after at most `KEY_EVERY` of them.
A result's frame is the worker's own copy, read-only: the UI cannot change the frame the next
one is packed against, nor can a model that reuses its output buffer.
"""

from __future__ import annotations

import bisect
import tempfile
import threading
import time
import zlib
from array import array
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

Step = tuple[int, int, int]

QUEUE = 64  # steps the queue holds by default (one sample makes at most 29)
THREADS = 1  # torch threads of the inference thread: measured faster than PyTorch's default (2) here
KEY_EVERY = 256  # steps between key frames (packed whole, not as a difference to the previous frame)


@dataclass
class Result:
    epoch: int  # the reset this result follows
    index: int  # steps since that reset (0: the reset frame itself)
    action: Step | None  # the step (None for the reset frame)
    frame: np.ndarray  # (224, 224, 3) uint8, decoded from the rolling latent; read-only
    delta: np.ndarray  # (56, 56) float32: mean |z_{t+1} - z_t| over latent channels
    norms: list[float] = field(default_factory=list)  # per-block activation RMS of the dynamics net
    ms: float = 0.0  # wall time of the step (dynamics + decode + diagnostics)
    packed: bytes = b""  # the frame for keeping, zlib-compressed here: XOR with the previous frame unless `key`
    key: bool = True  # `packed` is the frame itself (the reset frame, and every KEY_EVERY steps)


class InferenceWorker:
    def __init__(self, model: Any, bound: int = QUEUE, threads: int = THREADS) -> None:
        if bound < 1:
            raise ValueError(f"bound must be >= 1, got {bound}")
        self.model = model
        self.bound = bound
        self.threads = threads
        self.epoch = 0
        self._jobs: deque[tuple[int, str, Any]] = deque()
        self._results: deque[Result] = deque()
        self._busy = False
        self._closed = False
        self._error: BaseException | None = None
        self._index = 0
        self._previous: np.ndarray | None = None  # the last frame made, for the difference packing
        self._cv = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="infinipaint-inference", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------ UI side
    def reset(self, frame: np.ndarray) -> None:
        """Start a new epoch from this frame; queued steps of the old one are discarded."""
        with self._cv:
            self.epoch += 1
            self._jobs.clear()
            self._jobs.append((self.epoch, "reset", np.array(frame, dtype=np.uint8)))
            self._cv.notify_all()

    def submit(self, steps: Sequence[Step], block: bool = False, timeout: float | None = None) -> bool:
        """Queue all `steps` (True) or none of them (False: the queue would exceed its bound)."""
        if len(steps) > self.bound:
            raise ValueError(f"{len(steps)} steps can never fit a queue of {self.bound}")
        with self._cv:
            self._raise()
            if block:
                self._cv.wait_for(lambda: self._room() >= len(steps) or self._closed or self._error, timeout)
                self._raise()
            if self._room() < len(steps):
                return False
            self._jobs.extend((self.epoch, "step", tuple(s)) for s in steps)
            self._cv.notify_all()
            return True

    def _room(self) -> int:
        return self.bound - sum(1 for _, kind, _ in self._jobs if kind == "step")

    @property
    def backlog(self) -> int:
        """Steps submitted and not yet delivered (queued or running)."""
        with self._cv:
            return len(self._jobs) + int(self._busy)

    def poll(self) -> list[Result]:
        """Every result finished since the last poll, oldest first, of the current epoch only."""
        self._raise()
        out = []
        while self._results:
            r = self._results.popleft()
            if r.epoch == self.epoch:
                out.append(r)
        return out

    def wait(self, timeout: float) -> None:
        """Sleep until a result is ready or the worker is idle (headless runs: no busy loop)."""
        with self._cv:
            self._cv.wait_for(lambda: self._results or (not self._jobs and not self._busy) or self._error, timeout)
        self._raise()

    def idle(self) -> bool:
        with self._cv:
            return not self._jobs and not self._busy and not self._results

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._jobs.clear()
            self._cv.notify_all()
        self._thread.join(timeout=5)

    def _raise(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"the inference thread failed: {self._error!r}") from self._error

    # -------------------------------------------------------------------------- worker side
    def _run(self) -> None:
        import torch

        if self.threads:
            torch.set_num_threads(self.threads)
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._jobs or self._closed)
                if self._closed:
                    return
                epoch, kind, payload = self._jobs.popleft()
                self._busy = True
                self._cv.notify_all()  # room for the producer
            try:
                result = self._do(epoch, kind, payload)
            except BaseException as e:  # surfaced on the UI thread by poll/submit/wait
                with self._cv:
                    self._error, self._busy = e, False
                    self._cv.notify_all()
                return
            with self._cv:
                self._results.append(result)
                self._busy = False
                self._cv.notify_all()

    def _do(self, epoch: int, kind: str, payload: Any) -> Result:
        started = time.perf_counter()
        if kind == "reset":
            frame = self.model.reset(payload)
            self._index, action = 0, None
        else:
            frame = self.model.step(payload)
            self._index, action = self._index + 1, payload
        frame = np.array(frame, dtype=np.uint8)  # the worker's own: packed against by the next step
        frame.flags.writeable = False
        delta = self.model.last_delta[0].float().abs().mean(dim=0).cpu().numpy()  # (56, 56)
        norms = list(self.model.block_norms) if action is not None else []
        ms = (time.perf_counter() - started) * 1000
        key = self._index % KEY_EVERY == 0 or self._previous is None or self._previous.shape != frame.shape
        packed = zlib.compress((frame if key else np.bitwise_xor(frame, self._previous)).tobytes(), 1)
        self._previous = frame
        return Result(epoch, self._index, action, frame, delta, norms, ms, packed, key)


class FrameStore:
    """The frames of one session, as the worker packed them, in an unlinked temp file in `dir`
    (default: tempfile's folder, $TMPDIR or /tmp; where that is a tmpfs the file takes RAM, so
    give a folder on disk for a long session: ~1 KB a step).

        store = FrameStore(dir="out/dream")
        store.append(result.packed, result.key)     # frame len(store)
        store[i]                                    # uint8 (224, 224, 3)
        for frame in store.iter(start, stop): ...   # in order, one decompression each

    Memory: an 8-byte offset per frame (and 8 bytes per key frame), whatever the frames hold; the
    temp file vanishes when the store is closed (or the process ends). Frames handed out are
    read-only."""

    def __init__(self, shape: tuple[int, ...] = (224, 224, 3), dir: str | Path | None = None) -> None:
        self.shape = shape
        self._file = tempfile.TemporaryFile(prefix="infinipaint-frames-", dir=dir)
        self._offsets = array("q", [0])  # frame i is the bytes offsets[i]:offsets[i + 1]
        self._keys = array("q")  # indices of the key frames, ascending
        self._cursor: tuple[int, np.ndarray] | None = None  # the last frame decoded (sequential reads)

    def append(self, packed: bytes, key: bool) -> None:
        if not key and not len(self):
            raise ValueError("the first frame of a store must be a key frame")
        self._file.seek(self._offsets[-1])
        self._file.write(packed)
        if key:
            self._keys.append(len(self))
        self._offsets.append(self._offsets[-1] + len(packed))

    def __len__(self) -> int:
        return len(self._offsets) - 1

    @property
    def nbytes(self) -> int:
        """Bytes of packed frames on disk."""
        return self._offsets[-1]

    def __getitem__(self, i: int) -> np.ndarray:
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"frame {i} of a session of {n} frames")
        key = self._keys[bisect.bisect_right(self._keys, i) - 1]  # frames after it, up to i, are differences
        if self._cursor is not None and key <= self._cursor[0] <= i:
            j, frame = self._cursor  # go on from the last frame decoded
        else:
            j, frame = key, self._unpack(key, None)
        while j < i:
            j += 1
            frame = self._unpack(j, frame)
        self._cursor = (i, frame)
        return frame

    def iter(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Frames start..stop - 1 in order."""
        for i in range(start, len(self) if stop is None else min(stop, len(self))):
            yield self[i]

    def _unpack(self, i: int, previous: np.ndarray | None) -> np.ndarray:
        """Frame i: a key frame as it is (previous None), any other XORed onto the frame before it."""
        start, end = self._offsets[i], self._offsets[i + 1]
        self._file.seek(start)
        frame = np.frombuffer(zlib.decompress(self._file.read(end - start)), np.uint8).reshape(self.shape)
        if previous is not None:
            frame = np.bitwise_xor(frame, previous)
            frame.flags.writeable = False
        return frame

    def close(self) -> None:
        self._file.close()
        self._cursor = None
