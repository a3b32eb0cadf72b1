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
"""

from __future__ import annotations

import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

Step = tuple[int, int, int]

QUEUE = 64  # steps the queue holds by default (one sample makes at most 29)
THREADS = 1  # torch threads of the inference thread: measured faster than PyTorch's default (2) here


@dataclass
class Result:
    epoch: int  # the reset this result follows
    index: int  # steps since that reset (0: the reset frame itself)
    action: Step | None  # the step (None for the reset frame)
    frame: np.ndarray  # (224, 224, 3) uint8, decoded from the rolling latent
    delta: np.ndarray  # (56, 56) float32: mean |z_{t+1} - z_t| over latent channels
    norms: list[float] = field(default_factory=list)  # per-block activation RMS of the dynamics net
    ms: float = 0.0  # wall time of the step (dynamics + decode + diagnostics)
    packed: bytes = b""  # the frame, zlib-compressed here so the UI thread can keep every frame cheaply


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
        delta = self.model.last_delta[0].float().abs().mean(dim=0).cpu().numpy()  # (56, 56)
        norms = list(self.model.block_norms) if action is not None else []
        ms = (time.perf_counter() - started) * 1000
        return Result(epoch, self._index, action, frame, delta, norms, ms, zlib.compress(frame.tobytes(), 1))
