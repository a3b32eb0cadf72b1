"""Benchmarks: Minipaint's step time (and, with a model, the world model's latency per stage).

    infinipaint bench minipaint [--episodes 4] [--json]
    infinipaint bench --model weights/cpu [--out DIR]

Minipaint is timed over a realistic action stream: the steps of procedural-agent episodes (the
training distribution), replayed into a fresh Minipaint, each step timed including the copy of
the frame to numpy. Timings are medians and 95th percentiles of single steps.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np


def percentiles(seconds: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1e3
    return {"median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95)),
            "mean_ms": float(ms.mean()), "n": int(ms.size)}


def agent_actions(episodes: int, seed: int = 12345) -> list[list[tuple[int, int, int]]]:
    """The recorded steps of a few procedural-agent episodes."""
    from infinipaint.data.agents import record_episode

    return [[tuple(int(v) for v in a) for a in record_episode(seed, i).actions[1:]] for i in range(episodes)]


def bench_minipaint(episodes: int = 4, repeats: int = 3) -> dict[str, float]:
    """Per-step time of Minipaint.step (frame copy included) over agent episodes."""
    from infinipaint.minipaint import Minipaint

    streams = agent_actions(episodes)
    app = Minipaint()
    times: list[float] = []
    clock = time.perf_counter
    for _ in range(repeats):
        for steps in streams:
            app.reset()
            for action in steps:
                t0 = clock()
                app.step(action)
                times.append(clock() - t0)
    return {"steps_per_episode": float(np.mean([len(s) for s in streams])), **percentiles(times)}
