"""Long `dream` sessions: frames kept on disk, the save writes actions.json first and streams the
rest, so a 20,000-step session saves under a memory limit and its own memory does not grow with
its frames.

The 20,000-step session runs in a child process (its memory measured alone, its limit its own)
on `MinipaintModel`, a stand-in for the world model whose frames are Minipaint's: the untrained
tiny world model takes 6-10 ms a step on this shared 2-core machine (200 s for 20,000 steps),
and what is measured here is the viewer and its save, not the model. The tiny model itself
runs a session past two key frames, and its saved frames are checked bit for bit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from infinipaint.actions import ActionStream
from infinipaint.minipaint import Minipaint
from infinipaint.models.world_model import WorldModel
from infinipaint.viewer import dream as dream_module
from infinipaint.viewer.dream import Dream, difference, write_npz
from infinipaint.viewer.gif import LABEL_HEIGHT, GifWriter, write_gif
from infinipaint.viewer.inference import KEY_EVERY, FrameStore

ROOT = Path(__file__).resolve().parents[2]
LONG_STEPS = 20_000
# Each bound sits far above what the viewer takes (measured on the 2-core CPU: the save adds
# ~25 MB, 18,000 steps ~3 MB) and below what keeping the frames in memory would take: 3 GB raw
# for the save; for the 18,000 steps 2.7 GB raw, ~120 MB as zlib of each whole frame.
SAVE_LIMIT_MB = 1024  # address space the save may add (RLIMIT_AS)
SAVE_PEAK_MB = 400  # resident memory the save may add (VmHWM)
GROWTH_MB = 40  # resident memory 18,000 more steps may add
CHILD_TIMEOUT_S = 1800  # the child's 20,000 steps and save: under a minute alone, far longer on a busy machine


class MinipaintModel:
    """A stand-in for WorldModel (what `InferenceWorker` calls) whose frames are Minipaint's own."""

    bf16 = False

    def __init__(self) -> None:
        self.app = Minipaint()
        self.last_delta = torch.zeros(1, 4, 56, 56)
        self.block_norms = [1.0]

    def reset(self, frame: np.ndarray) -> np.ndarray:
        return self.app.reset()

    def step(self, action) -> np.ndarray:
        return self.app.step(action)


class OneBufferModel(MinipaintModel):
    """Hands out the same array every step, overwritten: as a model reusing its output buffer."""

    def reset(self, frame: np.ndarray) -> np.ndarray:
        self.buffer = self.app.reset().copy()
        return self.buffer

    def step(self, action) -> np.ndarray:
        self.buffer[:] = self.app.step(action)
        return self.buffer


def run_session(dream: Dream, samples, steps: int | None = None, marks: dict | None = None) -> None:
    """Feed samples (waiting for room, no drawing) until `steps` steps are done, then drain;
    `marks[n] = f()` is called once when n steps have been delivered."""
    marks = dict(marks or {})
    for s in samples:
        if steps is not None and len(dream.steps) + len(dream._expected) >= steps:
            break
        dream.feed(s, block=True)
        dream.consume()
        for n in [n for n in marks if len(dream.steps) >= n]:
            marks.pop(n)()
    while not dream.worker.idle():
        dream.worker.wait(0.05)
        dream.consume()
    for f in marks.values():
        f()


def status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def long_session_child(out: str) -> None:
    """In a fresh process: a 20,000-step headless session, its RSS at 2,000 and at 20,000 steps,
    then its save under RLIMIT_AS = what is mapped + SAVE_LIMIT_MB; prints the figures as JSON."""
    import gc
    import resource
    import time

    from infinipaint.evaluation.bench import soak_samples

    samples = soak_samples(minutes=25, seed=3)  # 18,750 samples, ~22,600 steps
    dream = Dream(MinipaintModel(), scale=1, realtime=False, mouse=False)
    rss: dict[int, float] = {}
    run_session(dream, samples, steps=LONG_STEPS, marks={2000: lambda: rss.setdefault(2000, status_mb("VmRSS"))})
    gc.collect()
    rss[len(dream.steps)] = status_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = status_mb("VmRSS")
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (int((status_mb("VmSize") + SAVE_LIMIT_MB) * 2**20), hard))
    t0 = time.perf_counter()
    dream.save(out)
    figures = {"steps": len(dream.steps), "samples": dream.samples, "rss": rss, "save_s": time.perf_counter() - t0,
               "save_rss_before": before, "save_hwm": status_mb("VmHWM"), "frames_on_disk": dream.frames.nbytes,
               "frames": len(dream.frames), "written": dream.written}
    dream.close()
    print(json.dumps(figures))


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc for memory figures")
def test_long_session_saves_under_a_memory_limit(tmp_path):
    out = tmp_path / "save"
    code = f"from tests.viewer.test_long_sessions import long_session_child; long_session_child({str(out)!r})"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S,
                          env={**os.environ, "SDL_VIDEODRIVER": "dummy", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    n = r["steps"]
    assert n >= LONG_STEPS and r["frames"] == n + 1
    # The session's memory: 18,000 more steps of frames are on disk, not in memory.
    grown = r["rss"][str(n)] - r["rss"]["2000"]
    assert grown < GROWTH_MB, f"RSS grew {grown:.1f} MB over {n - 2000} steps"
    # The save: complete under the address-space limit, its resident peak bounded.
    assert r["written"] == ["actions.json", "screenshot.png", "session.gif"]
    assert r["save_hwm"] - r["save_rss_before"] < SAVE_PEAK_MB, r
    # actions.json: every sample, replaying to the session's steps.
    doc = json.loads((out / "actions.json").read_text())
    assert doc["actions"] == r["samples"] and doc["steps"] == n
    steps = ActionStream.process(doc["actions"])
    assert len(steps) == n
    # session.gif: the last minute of steps (750 frames, fewer where frames repeat), ending on the
    # last frame; a frame in the middle shows the Minipaint frame of its own step.
    first = n + 1 - 750  # the session's frame the GIF starts with (frame i follows steps[i - 1])
    with Image.open(out / "session.gif") as gif:
        assert gif.size == (3 * 224, 224 + LABEL_HEIGHT) and 1 < gif.n_frames <= 750
        durations = _durations(gif)
        assert sum(durations) == 750 * 80
        middle = gif.n_frames // 2
        gif.seek(middle)
        shown = np.asarray(gif.convert("RGB"))[LABEL_HEIGHT:]
        gif.seek(gif.n_frames - 1)
        last = np.asarray(gif.convert("RGB"))[LABEL_HEIGHT:]
    at = first + sum(durations[:middle]) // 80  # the session frame GIF frame `middle` begins with
    app = Minipaint()
    truths = {0: app.reset()}
    for i, s in enumerate(steps, 1):
        frame = app.step(s)
        if i in (at - 1, at):
            truths[i] = frame
    assert not np.array_equal(truths[at - 1], truths[at])  # a GIF frame begins where the picture changes
    assert np.array_equal(shown[:, 224:448], truths[at]), "the Minipaint panel is not its step's frame"
    truth = app.frame()
    assert np.array_equal(last, np.concatenate([truth, truth, difference(truth, truth)], axis=1))
    assert not list(out.glob("*.tmp"))


def _durations(gif: Image.Image) -> list[int]:
    out = []
    for i in range(gif.n_frames):
        gif.seek(i)
        out.append(gif.info["duration"])
    return out


def test_frame_store_hands_back_every_frame():
    """Key frames every KEY_EVERY steps, differences between: random and sequential reads exact."""
    rng = np.random.default_rng(0)
    dream = Dream(MinipaintModel(), scale=1, realtime=False, mouse=False)
    try:
        samples = [(int(x), int(y), int(d)) for x, y, d in zip(rng.integers(0, 224, 500), rng.integers(0, 224, 500),
                                                               rng.integers(0, 2, 500))]
        run_session(dream, samples, steps=2 * KEY_EVERY + 40)
        app = Minipaint()
        expected = [app.reset()] + [app.step(s) for s in dream.steps]
        assert len(dream.frames) == len(expected) > 2 * KEY_EVERY
        assert dream.frames._keys.tolist() == list(range(0, len(expected), KEY_EVERY))
        for i in [*range(len(expected)), 2 * KEY_EVERY + 5, 3, KEY_EVERY - 1, KEY_EVERY, 0, -1]:
            assert np.array_equal(dream.frame(i), expected[i]), i
        assert all(np.array_equal(f, e) for f, e in zip(dream.frames.iter(KEY_EVERY - 3), expected[KEY_EVERY - 3 :]))
        assert dream.frames.nbytes < 2000 * len(expected)  # differences of Minipaint frames: well under 2 KB each
        with pytest.raises(IndexError):
            dream.frame(len(expected))
    finally:
        dream.close()
    store = FrameStore()
    with pytest.raises(ValueError, match="key frame"):
        store.append(b"", key=False)
    store.close()


def test_tiny_model_session_saves_its_frames_exactly(tiny_model, tmp_path):
    """The tiny world model past two key frames: frames.npz and session.gif hold its frames."""
    rng = np.random.default_rng(1)
    samples = [(int(x), int(y), int(d)) for x, y, d in zip(rng.integers(0, 224, 400), rng.integers(0, 224, 400),
                                                           rng.integers(0, 2, 400))]
    dream = Dream(WorldModel.load(tiny_model, bf16=False), scale=1, realtime=False, mouse=False, save_frames=True,
                  gif_seconds=2.0)
    try:
        run_session(dream, samples, steps=KEY_EVERY + 30)
        n = len(dream.steps)
        ref = WorldModel.load(tiny_model, bf16=False)
        threads = torch.get_num_threads()
        torch.set_num_threads(dream.worker.threads)
        try:
            expected = [ref.reset(Minipaint().reset())] + [ref.step(s) for s in dream.steps]
        finally:
            torch.set_num_threads(threads)
        dream.save(tmp_path)
        assert dream.written == ["actions.json", "screenshot.png", "session.gif", "frames.npz"]
    finally:
        dream.close()
    saved = np.load(tmp_path / "frames.npz")
    assert saved["pred"].shape == saved["truth"].shape == (n, 224, 224, 3)
    assert np.array_equal(saved["pred"], np.stack(expected[1:]))
    app = Minipaint()
    app.reset()
    assert np.array_equal(saved["truth"], np.stack([app.step(s) for s in dream.steps]))
    assert saved["steps"].tolist() == [list(s) for s in dream.steps]
    truths = [Minipaint().reset(), *saved["truth"]]  # the session's Minipaint frames 0..n
    first = n + 1 - 25  # --gif-seconds 2: the last 25 steps
    with Image.open(tmp_path / "session.gif") as gif:
        durations = _durations(gif)
        assert sum(durations) == 25 * 80
        middle = gif.n_frames // 2
        gif.seek(middle)
        shown = np.asarray(gif.convert("RGB"))[LABEL_HEIGHT:]
        gif.seek(gif.n_frames - 1)
        last = np.asarray(gif.convert("RGB"))[LABEL_HEIGHT:, :224]
    # A GIF frame has at most 256 colours: the untrained model's noisy frame is close, not exact.
    assert err(last, expected[-1]) < 8
    # The middle GIF frame: both panels are of the step it begins with, not of a neighbour.
    at = first + sum(durations[:middle]) // 80
    assert err(shown[:, :224], expected[at]) < 8
    real = shown[:, 224:448]
    assert err(real, truths[at]) < 1 and all(err(real, truths[i]) > err(real, truths[at])
                                              for i in (at - 1, at + 1) if not np.array_equal(truths[i], truths[at]))


def err(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two uint8 images."""
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


def test_save_writes_actions_json_first(monkeypatch, tmp_path, script):
    """A save that fails in the GIF (a full disk) has written the complete actions.json already,
    leaves no partial file, and the window's `s` says so and goes on."""
    dream = Dream(MinipaintModel(), scale=1, realtime=False, mouse=False, save_dir=tmp_path)
    try:
        run_session(dream, script)
        (tmp_path / "session.gif").write_bytes(b"the GIF of an earlier save")

        add = GifWriter.add

        def full_disk(self, frame):  # the disk fills up a few frames into the GIF
            if self.frames == 3:
                raise OSError(28, "No space left on device")
            add(self, frame)

        monkeypatch.setattr(GifWriter, "add", full_disk)
        with pytest.raises(OSError, match="No space"):
            dream.save(tmp_path)
        doc = json.loads((tmp_path / "actions.json").read_text())
        assert doc["actions"] == [list(s) for s in script] and doc["steps"] == len(dream.steps)
        assert ActionStream.process(doc["actions"]) == dream.steps
        assert (tmp_path / "session.gif").read_bytes() == b"the GIF of an earlier save"  # not half overwritten
        assert not list(tmp_path.glob("*.tmp"))
        dream.on_key("s")  # in a window: a message, no exception
        assert "failed after writing actions.json, screenshot.png" in dream.message and "No space" in dream.message
        # The session goes on: more steps, and the next save (the disk has room again) writes everything.
        monkeypatch.setattr(GifWriter, "add", add)
        before = len(dream.steps)
        run_session(dream, [(30, 120, 1), (90, 150, 1), (90, 150, 0)])
        assert len(dream.steps) > before
        dream.on_key("s")
        assert dream.written == ["actions.json", "screenshot.png", "session.gif"] and dream.message.startswith("saved")
        assert (tmp_path / "session.gif").read_bytes()[:6] == b"GIF89a"
    finally:
        dream.close()


def test_a_screenshot_pygame_cannot_write_is_reported(monkeypatch, tmp_path, script):
    """pygame.error from the screenshot: the window's `s` names what it wrote and the window stays."""
    dream = Dream(MinipaintModel(), scale=1, realtime=False, mouse=False, save_dir=tmp_path)
    try:
        run_session(dream, script[:10])

        def cannot(*args, **kwargs):
            raise dream_module.pygame.error("Couldn't write PNG")

        monkeypatch.setattr(dream_module.pygame.image, "save", cannot)
        dream.on_key("s")
        assert dream.message == f"save to {tmp_path} failed after writing actions.json: Couldn't write PNG"
        assert dream.written == ["actions.json"] and dream.window.running
        assert sorted(f.name for f in tmp_path.iterdir()) == ["actions.json"]  # no screenshot, no temp file
    finally:
        dream.close()


def test_a_session_too_long_to_replay_is_saved_with_a_warning(monkeypatch, tmp_path, script):
    from infinipaint import action_files as rollout

    monkeypatch.setattr(rollout, "MAX_SAMPLES", 20)
    dream = Dream(MinipaintModel(), scale=1, realtime=False, mouse=False)
    try:
        run_session(dream, script)
        dream.save(tmp_path)
        assert json.loads((tmp_path / "actions.json").read_text())["actions"] == [list(s) for s in script]
        assert dream.warning == (f"actions.json holds {len(script)} samples, more than the 20 that `infinipaint "
                                 "rollout` and `dream --replay` read: split it to replay it")
        assert dream.message.endswith(f"; WARNING: {dream.warning}")
        monkeypatch.setattr(rollout, "MAX_SAMPLES", len(script))
        dream.save(tmp_path)
        assert dream.warning == "" and "WARNING" not in dream.message
    finally:
        dream.close()


def test_result_frames_are_the_workers_own_and_read_only(tmp_path):
    """A model that reuses its output buffer still gets its frames kept exactly; the UI cannot
    write into a shown frame; the frames' temp file is in `frames_dir`."""
    rng = np.random.default_rng(2)
    samples = [(int(x), int(y), int(d)) for x, y, d in zip(rng.integers(0, 224, 60), rng.integers(0, 224, 60),
                                                           rng.integers(0, 2, 60))]
    dream = Dream(OneBufferModel(), scale=1, realtime=False, mouse=False, frames_dir=tmp_path)
    try:
        run_session(dream, samples)
        app = Minipaint()
        expected = [app.reset()] + [app.step(s) for s in dream.steps]
        assert all(np.array_equal(f, e) for f, e in zip(dream.frames.iter(), expected))
        assert not dream.shown.frame.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            dream.shown.frame[0, 0] = 0
        if Path("/proc/self/fd").exists():
            assert os.readlink(f"/proc/self/fd/{dream.frames._file.fileno()}").startswith(str(tmp_path))
    finally:
        dream.close()


def test_gif_writer_streams_exact_frames(tmp_path):
    """Frames of few colours come back exactly; repeats lengthen the previous frame; a failed
    stream leaves the old file as it was."""
    app = Minipaint()
    frames = [app.reset()]
    for a in [(60, 80, 1), (90, 90, 1), (90, 90, 0), (90, 90, 0), (20, 15, 1), (20, 15, 0), (150, 150, 1)]:
        frames.append(app.step(a))
    strips = [np.concatenate([f, 255 - f], axis=1) for f in frames]
    path = write_gif(tmp_path / "a.gif", strips, labels=("one", "two"), scale=2)
    distinct = [strips[0]] + [b for a, b in zip(strips, strips[1:]) if not np.array_equal(a, b)]
    assert len(distinct) < len(strips)  # hovers and releases repeat the frame
    with Image.open(path) as gif:
        assert gif.size == (2 * 448, 2 * 224 + LABEL_HEIGHT) and gif.n_frames == len(distinct)
        assert sum(_durations(gif)) == 80 * len(strips) and gif.info["loop"] == 0
        for i, want in enumerate(distinct):
            gif.seek(i)
            got = np.asarray(gif.convert("RGB"))[LABEL_HEIGHT:]
            assert np.array_equal(got, want.repeat(2, axis=0).repeat(2, axis=1)), f"frame {i}"
    before = path.read_bytes()

    def broken():
        yield strips[0]
        raise RuntimeError("the session ended")

    with pytest.raises(RuntimeError):
        write_gif(path, broken())
    assert path.read_bytes() == before and not list(tmp_path.glob("*.tmp"))
    with pytest.raises(ValueError, match="no frames"):
        write_gif(tmp_path / "empty.gif", [])
    with pytest.raises(ValueError, match="frame 1"):
        write_gif(tmp_path / "b.gif", [strips[0], frames[0]])


def test_write_npz_reads_back_as_savez(tmp_path):
    rows = np.random.default_rng(0).integers(0, 256, (5, 4, 3), dtype=np.uint8)
    path = write_npz(tmp_path / "f.npz", {"a": (rows.shape, np.uint8, iter(rows)),
                                          "b": ((2, 3), np.int16, [np.array([[1, -2, 3], [4, 5, 600]])])})
    with np.load(path) as f:
        assert np.array_equal(f["a"], rows) and f["b"].dtype == np.int16 and f["b"].tolist() == [[1, -2, 3], [4, 5, 600]]
    assert zipfile.ZipFile(path).getinfo("a.npy").compress_type == zipfile.ZIP_DEFLATED
    with pytest.raises(ValueError, match="a got 4 rows, expected 5"):
        write_npz(tmp_path / "g.npz", {"a": (rows.shape, np.uint8, iter(rows[:4]))})
    assert not (tmp_path / "g.npz").exists() and not list(tmp_path.glob("*.tmp"))


def test_gif_seconds_is_checked_and_its_default_stated(capsys):
    from infinipaint.cli import main

    for bad in (-1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="gif_seconds must be a finite number >= 0"):
            Dream(MinipaintModel(), scale=1, realtime=False, mouse=False, gif_seconds=bad)
    with pytest.raises(SystemExit):
        main(["dream", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"(default {dream_module.GIF_SECONDS:g}: the last 750 steps; 0: the whole session" in text
    for bad in ("-5", "inf", "nan"):
        assert main(["dream", "--replay", "x.json", "--headless", "--gif-seconds", bad]) == 2
        assert "--gif-seconds must be a finite number >= 0" in capsys.readouterr().err
