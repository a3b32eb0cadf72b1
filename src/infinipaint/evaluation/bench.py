"""Benchmarks: Minipaint's step time, the world model's latency per stage, training speed.

    infinipaint bench minipaint [--episodes 4] [--json]
    infinipaint bench --model weights/cpu [--out DIR] [--batch 16] [--threads N]
    infinipaint bench model --preset cpu          # architecture only: untrained weights, same speed

Minipaint is timed over a realistic action stream: the steps of procedural-agent episodes (the
training distribution), replayed into a fresh Minipaint, each step timed including the copy of
the frame to numpy. Timings are medians and 95th percentiles of single calls.

The world model is timed through its public API on real Minipaint frames of an agent episode:
`encode` (uint8 frame -> latent), `advance` (the dynamics step), `decode` (latent -> uint8
frame) and `step` (the full interactive step, dynamics + decode, batch 1, what the viewer calls,
along the episode's steps: it decodes only around the latent cells that changed), `step` again
decoding every frame whole (`full_step_whole_decode`), then throughput of advance + decode at a
larger batch. Training speed is a few AdamW steps of each network's own `loss` under bf16
autocast, on real frames (VAE) and on their latents and the episode's actions (dynamics), at the
batch size of the training preset. Ratios divide each median by Minipaint's median step from the
same run. Without `--model`, an untrained model of `--preset` is timed (speed does not depend on
the weights). Threads: PyTorch's default unless `--threads`; the count and the device are in the
output. On a shared 2-core machine the default (2 threads) can be 10-20x slower than `--threads 1`
while another process keeps a core busy (the two OpenMP threads wait on each other): compare both
before trusting a number.
"""

from __future__ import annotations

import functools
import platform
import time
from typing import Any, Callable, Sequence

import numpy as np
import torch

from infinipaint.models.encoding import drag_origins


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


# ------------------------------------------------------------------------------ world model
def bench_frames(n: int = 64, seed: int = 12345) -> tuple[np.ndarray, np.ndarray]:
    """n consecutive real Minipaint frames from the middle of an agent episode, and their steps
    (n, 3) (row i produced frame i)."""
    ep = _episode(seed)
    start = max(0, (len(ep.frames) - n) // 2)
    return ep.frames[start : start + n].copy(), ep.actions[start : start + n].astype(np.int64)


def bench_stream(seed: int = 12345) -> np.ndarray:
    """The steps (T, 3) of a whole agent episode: the per-step timings cycle through them, so their
    medians weigh canvas strokes, hovers and toolbar clicks as the agents do (a window of 64 steps
    can be all toolbar)."""
    return _episode(seed).actions.astype(np.int64)


@functools.lru_cache(maxsize=2)
def _episode(seed: int):
    """One agent episode, recorded once for `bench_frames` and `bench_stream`."""
    from infinipaint.data.agents import record_episode

    return record_episode(seed, 0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], Any], repeats: int, warmup: int, device: torch.device) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return percentiles(times)


def bench_world_model(wm: Any, frames: np.ndarray, actions: np.ndarray, batch: int = 16, repeats: int = 20,
                      warmup: int = 3, stream: np.ndarray | None = None) -> dict[str, Any]:
    """Latency of each stage at batch 1 and throughput of advance + decode at `batch`; the dynamics
    and full-step timings cycle through the steps of `stream` (default: `actions`)."""
    dev = wm.device
    z1 = wm.encode(frames[:1])
    stream = actions if stream is None else stream
    # consecutive steps (the window the dynamics runs on follows the cursor)
    origins = torch.from_numpy(drag_origins(stream))  # a stream that starts mid-drag takes its first row as the press: timing only
    pairs = [(torch.from_numpy(stream[k : k + 1]), torch.from_numpy(stream[k + 1 : k + 2]), origins[k + 1 : k + 2])
             for k in range(len(stream) - 1)]
    wm.reset(frames[0])
    i, j = iter(range(1 << 30)), iter(range(1 << 30))
    step_actions = [tuple(int(v) for v in a) for a in stream[1:]]
    out: dict[str, Any] = {
        "encode": time_calls(lambda: wm.encode(frames[:1]), repeats, warmup, dev),
        "dynamics": time_calls(lambda: wm.advance(z1, *pairs[next(j) % len(pairs)]), repeats, warmup, dev),
        "decode": time_calls(lambda: wm.decode(z1), repeats, warmup, dev),
        "full_step": time_calls(lambda: wm.step(step_actions[next(i) % len(step_actions)]), repeats, warmup, dev),
    }
    radius, wm.decode_radius = wm.decode_radius, None
    wm.reset(frames[0])
    out["full_step_whole_decode"] = time_calls(lambda: wm.step(step_actions[next(i) % len(step_actions)]),
                                               repeats, warmup, dev)
    wm.decode_radius = radius
    b = min(batch, len(frames) - 1)
    zb = wm.encode(frames[:b])
    prevb, actb = torch.from_numpy(actions[:b]), torch.from_numpy(actions[1 : b + 1])
    originb = torch.from_numpy(drag_origins(actions)[1 : b + 1])
    t = time_calls(lambda: wm.decode(wm.advance(zb, prevb, actb, originb)), max(3, repeats // 4), 1, dev)
    out["throughput"] = {"batch": b, **t, "frames_per_s": b / (t["median_ms"] / 1e3)}
    return out


def bench_training(vae_config: Any, dyn_config: Any, frames: np.ndarray, actions: np.ndarray, batch: dict[str, int],
                   device: torch.device, bf16: bool = True, steps: int = 3, warmup: int = 1) -> dict[str, Any]:
    """Samples per second of a few AdamW steps of each network's `loss` (fresh weights)."""
    from infinipaint.models.dynamics import LatentCNN
    from infinipaint.models.vae import VAE

    rng = np.random.default_rng(0)
    cast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)  # noqa: E731

    def timed(model: torch.nn.Module, make_batch: Callable[[], Any], n: int) -> dict[str, float]:
        model.to(device).to(memory_format=torch.channels_last).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        times = []
        for k in range(warmup + steps):
            b = make_batch()
            _sync(device)
            t0 = time.perf_counter()
            with cast():
                loss, _ = model.loss(b)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            _sync(device)
            if k >= warmup:
                times.append(time.perf_counter() - t0)
        return {"batch": n, "steps": steps, "step_ms_median": float(np.median(times) * 1e3),
                "samples_per_s": n * steps / float(np.sum(times))}

    out: dict[str, Any] = {}
    nv = batch["vae"]
    vae = VAE(vae_config)
    out["vae"] = timed(vae, lambda: torch.from_numpy(frames[rng.integers(0, len(frames), nv)]).to(device), nv)
    # Dynamics: windows of unroll + 1 latents of consecutive real frames (encoded by the fresh VAE).
    k = dyn_config.unroll
    with torch.no_grad():
        vae.eval()
        z = torch.cat([vae.encode(torch.from_numpy(frames[j : j + 16]).to(device).permute(0, 3, 1, 2).float() / 255)
                       for j in range(0, len(frames), 16)]).float()  # (N, C, 56, 56)
    dyn = LatentCNN(dyn_config)
    dyn.set_latent_stats(z.mean(dim=(0, 2, 3)).cpu(), z.std(dim=(0, 2, 3)).cpu())
    acts, origins = torch.from_numpy(actions), torch.from_numpy(drag_origins(actions))
    nd = batch["dynamics"]

    def dyn_batch() -> dict[str, torch.Tensor]:
        starts = rng.integers(0, len(frames) - k, nd)
        return {"z": torch.stack([z[s : s + k + 1] for s in starts]),
                "actions": torch.stack([acts[s : s + k + 1] for s in starts]).to(device),
                "origins": torch.stack([origins[s : s + k + 1] for s in starts]).to(device)}

    out["dynamics"] = timed(dyn, dyn_batch, nd)
    return out


def environment(device: torch.device) -> dict[str, Any]:
    info = {"device": str(device), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "machine": platform.machine(), "processor": platform.processor() or None}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def ratios(minipaint: dict[str, float], wm: dict[str, Any]) -> dict[str, float]:
    """World-model medians divided by Minipaint's median step (how many times slower)."""
    base = minipaint["median_ms"]
    out = {k: wm[k]["median_ms"] / base for k in ("encode", "dynamics", "decode", "full_step")}
    t = wm["throughput"]
    out["throughput_per_frame"] = t["median_ms"] / t["batch"] / base
    return out
