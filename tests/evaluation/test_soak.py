"""`infinipaint bench soak`: a synthetic long pointer recording, a real-time headless viewer
session on it and its save, with RSS every interval, fps, latency percentiles and the save's
time and peak memory (here for a few seconds, with the tiny untrained model)."""

from __future__ import annotations

import json
import mmap
import subprocess
import sys
import time

import numpy as np
import pytest

from infinipaint.actions import ActionStream
from infinipaint.cli import main
from infinipaint.evaluation import bench
from infinipaint.minipaint import LAYOUT, Minipaint
from infinipaint.models.world_model import WorldModel


def test_soak_samples_are_a_long_varied_session():
    samples = bench.soak_samples(minutes=6)
    assert len(samples) == 6 * 750 and samples == bench.soak_samples(minutes=6)
    assert samples != bench.soak_samples(minutes=6, seed=5)
    assert all(0 <= x < 224 and 0 <= y < 224 and d in (0, 1) and type(x) is int for x, y, d in samples)
    steps = ActionStream.process(samples)
    assert len(steps) > len(samples)  # drags make sub-steps
    app = Minipaint()
    app.reset()
    colours, tools, changed, painted = set(), set(), 0, []
    last = app.frame()
    x, y, w, h = LAYOUT.rect("canvas")
    for i, s in enumerate(steps):
        frame = app.step(s)
        changed += not np.array_equal(frame, last)
        last = frame
        colours.add(app.state.color)
        tools.add(app.state.tool)
        if i % 500 == 0:
            painted.append((frame[y : y + h, x : x + w] != 255).any(axis=2).mean())
    assert len(colours) >= 4 and tools == {"pen", "eraser"} and changed > len(steps) // 4
    assert max(painted) > 0.3  # the canvas fills up (and is erased), as a long session's does


def wait_for(condition, timeout: float = 60.0) -> None:
    """Until `condition()` holds (a busy machine may take long; the limit only ends a hang)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_memory_monitor_reads_every_interval():
    with bench.MemoryMonitor(every=0.1, poll=0.01) as mon:
        ballast = mmap.mmap(-1, 40 * 2**20)  # 40 MB of fresh pages (not memory malloc already holds)
        np.frombuffer(ballast, np.uint8)[:] = 1
        filled = time.perf_counter() - mon._t0
        wait_for(lambda: len(mon.readings) >= 3 and mon.readings[-1][0] > filled + 0.1)
    times = [t for t, _ in mon.readings]
    assert times[0] == 0.0 and all(t >= 0.1 * i - 0.05 for i, t in enumerate(times))  # no sooner than due
    assert times == sorted(times)
    assert mon.peak >= mon.readings[0][1] + 30 and mon.readings[-1][1] >= mon.readings[0][1] + 30
    ballast.close()


def test_memory_monitor_sleeps_between_readings(monkeypatch):
    """Between its readings the monitor reads nothing; inside `polling()` it reads every `poll` s."""
    reads = []
    rss_mb = bench.rss_mb
    monkeypatch.setattr(bench, "rss_mb", lambda: reads.append(1) or rss_mb())
    with bench.MemoryMonitor(every=3600, poll=0.01) as mon:
        time.sleep(0.3)
        idle = len(reads)
        with mon.polling():
            wait_for(lambda: len(reads) >= idle + 5)
    assert idle == 1 and len(mon.readings) == 1  # the reading at the start, then sleep


@pytest.mark.slow
def test_bench_soak_reports_every_figure(tiny_model, tmp_path):
    wm = WorldModel.load(tiny_model)
    r = bench.bench_soak(wm, minutes=0.05, save_dir=tmp_path / "save", every=0.5)
    assert r["samples"] == 38 and r["steps"] >= r["samples"] // 2
    assert len(r["rss_mb"]) >= 1 and r["rss_mb"][0] == [0.0, r["rss_start_mb"]] and r["rss_start_mb"] > 50
    assert r["ui_fps"] > 0 and r["wall_s"] >= 37 * 0.08 - 0.05  # real time: 38 samples 80 ms apart
    lat = r["step_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"]
    assert r["dropped_samples"] == 0 and r["missed_samples"] >= 0 and r["late_samples"] >= 0
    save = r["save"]
    assert save["s"] > 0 and save["peak_rss_mb"] >= r["rss_end_mb"] - 1 and save["peak_above_run_mb"] < 300
    assert {"actions.json", "screenshot.png", "session.gif"} <= set(save["files"])
    doc = json.loads((tmp_path / "save" / "actions.json").read_text())
    assert doc["actions"] == [list(s) for s in bench.soak_samples(0.05)] and doc["steps"] == r["steps"]
    assert len(ActionStream.process(doc["actions"])) == r["steps"]


@pytest.mark.slow
def test_bench_soak_command(tmp_path, capsys):
    assert main(["bench", "soak", "--minutes", "0.04", "--preset", "tiny", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "RSS: 0.0 min" in text and "step latency p50" in text and "save: " in text and "peak RSS" in text
    r = json.loads((tmp_path / "soak.json").read_text())
    assert r["model"].startswith("untrained tiny") and r["samples"] == 30 and r["save"]["dir"] is None
    assert r["threads"] == 1 and r["device"] == "cpu"
    for bad in (["--minutes", "0"], ["--minutes", "inf"], ["--every", "nan"]):
        assert main(["bench", "soak", *bad]) == 2
        assert "--minutes and --every must be finite numbers > 0" in capsys.readouterr().err
    assert main(["bench", "soak", "--gif-seconds", "inf"]) == 2
    assert "--gif-seconds must be a finite number >= 0" in capsys.readouterr().err


@pytest.mark.parametrize("target", ["all", "minipaint", "model"])
def test_soak_options_are_refused_for_other_targets(capsys, target):
    argv = ["bench"] + ([] if target == "all" else [target])
    assert main([*argv, "--minutes", "5", "--save-frames"]) == 2
    assert f"--minutes, --save-frames: only for `bench soak`, not `bench {target}`" in capsys.readouterr().err
    assert main([*argv, "--gif-seconds", "0"]) == 2  # 0 is given, not the default
    assert "--gif-seconds: only for `bench soak`" in capsys.readouterr().err


def test_soak_sets_its_environment_before_torch_is_imported():
    """OpenMP reads OMP_WAIT_POLICY when torch loads it: parsing the command line imports no torch,
    and `bench soak` sets the session's environment first."""
    code = ("import sys\n"
            "from infinipaint.cli import build_parser, main\n"
            "import infinipaint.viewer.commands as viewer\n"
            "build_parser()\n"
            "assert 'torch' not in sys.modules, 'parsing imported torch'\n"
            "set_env = viewer.session_environment\n"
            "def spy():\n"
            "    assert 'torch' not in sys.modules, 'torch came first'\n"
            "    set_env()\n"
            "    print('environment set')\n"
            "viewer.session_environment = spy\n"
            "sys.exit(main(['bench', 'soak', '--minutes', '-1']))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and proc.stdout == "environment set\n", proc.stderr[-2000:]
    assert "--minutes and --every must be finite numbers > 0" in proc.stderr
