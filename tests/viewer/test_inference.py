"""The inference thread: every step delivered in order, the bound respected, resets discard stale work."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from infinipaint.viewer.inference import InferenceWorker


class FakeModel:
    """A WorldModel stand-in whose frame encodes the step count; `gate` can hold every step."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()  # set when a step has begun
        self.n = 0
        self.calls = 0  # steps run, resets or not
        self.last_delta = torch.zeros(1, 4, 56, 56)
        self.block_norms = [1.0, 2.0]

    def reset(self, frame: np.ndarray) -> np.ndarray:
        self.n = 0
        return frame.copy()

    def step(self, action) -> np.ndarray:
        self.entered.set()
        assert self.gate.wait(5)
        time.sleep(self.delay)
        self.n += 1
        self.calls += 1
        return np.full((224, 224, 3), self.n % 256, np.uint8)


def drain(worker: InferenceWorker, count: int, timeout: float = 5.0) -> list:
    out, end = [], time.perf_counter() + timeout
    while len(out) < count and time.perf_counter() < end:
        worker.wait(0.05)
        out += worker.poll()
    return out


def until(condition, timeout: float = 10.0) -> bool:
    """Poll `condition` until it holds (True) or `timeout` seconds have passed (False)."""
    end = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > end:
            return False
        time.sleep(0.001)
    return True


def test_every_step_in_order_under_backpressure():
    worker = InferenceWorker(FakeModel(delay=0.002), bound=4)
    try:
        worker.reset(np.zeros((224, 224, 3), np.uint8))
        steps = [(i % 224, (3 * i) % 224, i % 2) for i in range(60)]
        got = []
        for i in range(0, 60, 3):  # the producer outruns the model: blocking submits wait for room
            assert worker.submit(steps[i : i + 3], block=True, timeout=5)
            assert worker.backlog <= 4 + 1
            got += worker.poll()
        got += drain(worker, 61 - len(got))
        assert [r.index for r in got] == list(range(61))
        assert [r.action for r in got[1:]] == steps
        assert all(int(r.frame[0, 0, 0]) == r.index for r in got)
        assert got[1].norms == [1.0, 2.0] and got[1].delta.shape == (56, 56) and got[1].ms > 0
        assert worker.idle()
    finally:
        worker.close()


def test_full_queue_refuses_whole_samples_and_reset_discards_stale_steps():
    model = FakeModel()
    worker = InferenceWorker(model, bound=4)
    try:
        worker.reset(np.zeros((224, 224, 3), np.uint8))
        assert drain(worker, 1)[0].index == 0
        model.gate.clear()  # the model hangs: nothing leaves the queue
        assert worker.submit([(1, 1, 0)])  # taken by the worker, blocked inside step
        assert model.entered.wait(10)
        assert worker.submit([(2, 2, 0), (3, 3, 0), (4, 4, 0)])
        assert not worker.submit([(5, 5, 0), (6, 6, 0)])  # all or nothing: only one slot is left
        assert worker.submit([(5, 5, 0)])
        assert not worker.submit([(6, 6, 0)])
        assert not worker.submit([(6, 6, 0)], block=True, timeout=0.05)
        worker.reset(np.full((224, 224, 3), 7, np.uint8))  # drops the queue; the running step is stale
        model.gate.set()
        got = drain(worker, 1)
        assert until(lambda: worker.backlog == 0)  # everything the worker will ever run has run
        got += worker.poll()
        assert [(r.index, r.action) for r in got] == [(0, None)] and int(got[0].frame[0, 0, 0]) == 7
        assert model.calls == 1  # the step that was running when it reset; none of the dropped ones
        with pytest.raises(ValueError):
            worker.submit([(0, 0, 0)] * 5)
    finally:
        worker.close()


def test_model_errors_reach_the_ui_thread():
    class Broken(FakeModel):
        def step(self, action):
            raise RuntimeError("boom")

    worker = InferenceWorker(Broken(), bound=4)
    try:
        worker.reset(np.zeros((224, 224, 3), np.uint8))
        worker.submit([(1, 1, 0)])
        with pytest.raises(RuntimeError, match="boom"):
            drain(worker, 3, timeout=2)
    finally:
        worker.close()
