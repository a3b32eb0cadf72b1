"""Benchmarks: Minipaint's step time, the world model's latency per stage, training speed.

    infinipaint bench minipaint [--episodes 4] [--json]
    infinipaint bench --model weights/cpu [--out DIR] [--batch 16] [--threads N]
    infinipaint bench model --preset cpu          # architecture only: untrained weights, same speed
    infinipaint bench soak --minutes 30 [--model weights/cpu] [--out DIR]   # a long viewer session

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

The soak (`bench soak --minutes M`) is a long viewer session as a person would have it: `Dream`
headless in real time (80-ms samples, a 60-fps loop, scale 3, the inference thread on 1 torch
thread unless `--threads`), replaying M minutes of synthetic pointer samples (`soak_samples`:
procedural agents painting one after another on the same canvas, so it fills as a long session's
does), then the save of the session (actions.json, screenshot, session.gif, and frames.npz with
`--save-frames`). It reports the process's RSS every minute, UI fps, step latency p50/p95/p99,
dropped / missed / late samples, and the save's time and peak RSS (Linux: VmHWM, reset through
/proc/self/clear_refs just before the save; elsewhere polled every 20 ms during the save). The
memory monitor sleeps between its readings: the session it measures runs undisturbed.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

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


# ------------------------------------------------------------------------------------ soak
SAMPLE_MS = 80  # the viewer's pointer sampling interval
SOAK_MINUTES = 30.0  # `bench soak`'s default length
SOAK_EVERY = 60.0  # s between its RSS readings
SOAK_AGENT_SAMPLES = 3000  # samples of one procedural agent before the next takes over (4 minutes)


def soak_samples(minutes: float, seed: int = 0) -> list[tuple[int, int, int]]:
    """`minutes` of raw 80-ms pointer samples: procedural agents (a new one, of a new style, every
    SOAK_AGENT_SAMPLES samples) painting on one Minipaint that follows their steps, as a person's
    long session would."""
    from infinipaint.actions import ActionStream
    from infinipaint.data.agents import Agent
    from infinipaint.minipaint import Minipaint

    n = max(1, round(minutes * 60_000 / SAMPLE_MS))
    rng = np.random.default_rng(seed)
    app, stream = Minipaint(), ActionStream()
    app.reset()
    out: list[tuple[int, int, int]] = []
    agent, switch_at = None, 0
    while len(out) < n:
        if len(out) >= switch_at:  # the next agent takes over after the current one's action
            agent, switch_at = Agent(rng, app), switch_at + SOAK_AGENT_SAMPLES
        for x, y, down, _ in agent.act():
            out.append((int(x), int(y), int(down)))
            for step in stream.push(x, y, down):
                app.step(step)  # the agent reads the app's state (its tool) to choose what comes next
            if len(out) == n:
                break
    return out


def rss_mb() -> float | None:
    """This process's resident memory now, MB (Linux /proc; None elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


def _status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process; False where it cannot be done."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class MemoryMonitor:
    """A thread reading this process's RSS once every `every` s, kept as (seconds, MB) in
    `readings`, and `peak`: the most since `mark()`. Between readings it sleeps, so it does not
    perturb what it measures; inside `with monitor.polling():` it also reads every `poll` s for the
    peak (where the kernel's VmHWM cannot be reset, around a short burst such as a save)."""

    def __init__(self, every: float = SOAK_EVERY, poll: float = 0.02) -> None:
        self.every, self.poll = every, poll
        self.readings: list[tuple[float, float]] = []
        self.peak = 0.0
        self._lock = threading.Lock()  # `mark` and the thread both set `peak`
        self._polling = False
        self._stop = threading.Event()
        self._wake = threading.Event()  # cuts a sleep short: stopping, or polling from now on
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name="infinipaint-rss", daemon=True)

    def __enter__(self) -> "MemoryMonitor":
        self.readings.append((0.0, rss_mb() or 0.0))
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join()

    def mark(self) -> None:
        with self._lock:
            self.peak = rss_mb() or 0.0

    @contextlib.contextmanager
    def polling(self) -> Iterator[None]:
        """Read every `poll` s inside the block (for `peak`), not only every `every` s."""
        self._polling = True
        self._wake.set()
        try:
            yield
        finally:
            self._polling = False

    def _run(self) -> None:
        due = self.every
        while not self._stop.is_set():
            wait = due - (time.perf_counter() - self._t0)
            self._wake.wait(max(min(wait, self.poll) if self._polling else wait, 0.0))
            self._wake.clear()  # a flag set meanwhile is read on the next round
            if self._stop.is_set():
                return
            mb = rss_mb() or 0.0
            with self._lock:
                self.peak = max(self.peak, mb)
            t = time.perf_counter() - self._t0
            if t >= due:
                self.readings.append((round(t, 1), mb))
                while due <= t:  # after a stall: the next reading at the next interval, not at once
                    due += self.every


def bench_soak(wm: Any, minutes: float, save_dir: str | Path | None = None, threads: int = 1, every: float = SOAK_EVERY,
               gif_seconds: float | None = None, save_frames: bool = False, seed: int = 0,
               progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the soak (module docstring) with world model `wm` (the inference thread on `threads`
    torch threads, the viewer's 1 by default); RSS is read every `every` s until the save ends;
    the session is saved to `save_dir` (default: a temp folder, removed after). Returns the figures."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # headless: read when the window opens
    from infinipaint.viewer.dream import Dream
    from infinipaint.viewer.gif import GIF_SECONDS

    samples = soak_samples(minutes, seed)
    scratch = tempfile.TemporaryDirectory(prefix="infinipaint-soak-") if save_dir is None else None
    out_dir = Path(scratch.name if scratch else save_dir)
    dream = Dream(wm, replay=samples, realtime=True, mouse=False, threads=threads, save_dir=out_dir,
                  save_frames=save_frames, gif_seconds=GIF_SECONDS if gif_seconds is None else gif_seconds,
                  title="Infinipaint soak")
    try:
        with MemoryMonitor(every=every) as mon:
            if progress:
                progress(f"soak: {len(samples):,} samples ({minutes:g} min at {SAMPLE_MS} ms), RSS {mon.readings[0][1]:.0f} MB")
            shown = 1
            while dream.window.running and not dream.replay_done():
                dream.run(max_ticks=dream.window.ticks + 600)  # about 10 s at 60 fps
                while progress and len(mon.readings) > shown:
                    t, mb = mon.readings[shown]
                    progress(f"  {t / 60:5.1f} min: RSS {mb:.0f} MB, step {len(dream.steps):,}, "
                             f"replay {dream.replay_pos:,}/{len(samples):,}")
                    shown += 1
            run_end = rss_mb()
            summary = dream.summary()
            on_disk = dream.frames.nbytes
            exact = _reset_peak()
            mon.mark()
            t0 = time.perf_counter()
            with contextlib.nullcontext() if exact else mon.polling():  # VmHWM holds the peak, or poll for it
                dream.save(out_dir)
            save_s = time.perf_counter() - t0
            peak = _status_mb("VmHWM") if exact else None
            peak = max(peak or 0.0, mon.peak)
        files = {f.name: f.stat().st_size for f in sorted(out_dir.iterdir()) if f.is_file()}
    finally:
        dream.close()
        if scratch:
            scratch.cleanup()
    return {
        "minutes": minutes, "samples": summary["samples"], "steps": summary["steps"],
        "rss_mb": [[t, round(mb, 1)] for t, mb in mon.readings],
        "rss_start_mb": round(mon.readings[0][1], 1), "rss_end_mb": round(run_end or 0.0, 1),
        "ui_fps": summary["ui_fps"], "wall_s": summary["wall_s"],
        "step_ms": {"p50": summary["step_ms_median"], "p95": summary["step_ms_p95"], "p99": summary["step_ms_p99"],
                    "mean": summary["step_ms_mean"]},
        "dropped_samples": summary["dropped"], "missed_samples": summary["missed"], "late_samples": summary["late"],
        "frames_on_disk_mb": on_disk / 2**20,
        "save": {"s": save_s, "peak_rss_mb": round(peak, 1), "peak_above_run_mb": round(peak - (run_end or 0.0), 1),
                 "peak_exact": exact, "files": files, "dir": None if scratch else str(out_dir),
                 "gif_seconds": dream.gif_seconds, "save_frames": save_frames},
        "threads": threads,
    }


def bench_onnx(model_dir: str | Path, frames: np.ndarray, stream: np.ndarray, repeats: int = 20, warmup: int = 3,
               threads: int | None = None) -> dict[str, Any]:
    """The ONNX export of `model_dir` through onnxruntime beside the PyTorch model, in one run:
    per-stage latency at batch 1 (encode, one dynamics step, decode, full step = step + decode),
    PyTorch fp32 and with automatic precision, onnxruntime fp32; the export's time and sizes; and
    the share of identical pixels, onnxruntime against PyTorch fp32, over the steps of `stream`."""
    import tempfile

    from infinipaint.export import export_onnx
    from infinipaint.models.world_model import WorldModel
    from infinipaint.onnx_backend import OnnxWorldModel

    cpu = torch.device("cpu")
    steps = [tuple(int(v) for v in a) for a in stream[1:]]
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        info = export_onnx(model_dir, tmp)
        export_s = time.perf_counter() - started
        ox = OnnxWorldModel.load(tmp, threads=threads or torch.get_num_threads())
        out: dict[str, Any] = {"export_s": export_s, "files_mib": {k: f["bytes"] / 2**20 for k, f in info["files"].items()}}
        z1 = ox.encode(frames[:1])
        origins = drag_origins(stream)
        i, j = iter(range(1 << 30)), iter(range(1 << 30))

        def one_step() -> None:
            k = next(j) % (len(stream) - 1)
            ox.advance(z1, stream[k], stream[k + 1], origins[k : k + 1])

        ox.reset(frames[0])
        out["onnxruntime"] = {
            "encode": time_calls(lambda: ox.encode(frames[:1]), repeats, warmup, cpu),
            "dynamics": time_calls(one_step, repeats, warmup, cpu),
            "decode": time_calls(lambda: ox.decode(z1), repeats, warmup, cpu),
            "full_step": time_calls(lambda: ox.step(steps[next(i) % len(steps)]), repeats, warmup, cpu),
        }
        for name, bf16 in (("torch_fp32", False), ("torch_auto", None)):
            wm = WorldModel.load(model_dir, bf16=bf16)
            timed = bench_world_model(wm, frames, stream, batch=1, repeats=repeats, warmup=warmup, stream=stream)
            out[name] = {"bf16": wm.bf16, **{k: timed[k] for k in ("encode", "dynamics", "decode", "full_step",
                                                                    "full_step_whole_decode")}}
        fp32 = WorldModel.load(model_dir, bf16=False)
        same = []
        a, b = fp32.reset(frames[0]), ox.reset(frames[0])
        same.append(float((a == b).all(axis=-1).mean()))
        for s in steps:
            same.append(float((fp32.step(s) == ox.step(s)).all(axis=-1).mean()))
        out["identical_pixels"] = {"frames": len(same), "mean": float(np.mean(same)), "min": float(np.min(same)),
                                   "steps_all_identical": float(np.mean(np.asarray(same) == 1.0))}
    return out
