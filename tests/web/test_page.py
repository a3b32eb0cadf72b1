"""The browser page in a real browser: Debian's Chromium, headless, driven by playwright-core
(`page_drive.mjs`) on a site `export web` wrote of weights/cpu and `serve` serves.

A drag on the page's canvas paints where it went; a swatch press then a drag paints in that colour
(the tests know Minipaint's layout, the page does not); the page's frames equal the PyTorch world
model's (fp32) for the steps the page ran; Reset brings the first frame back; a site without its
model, or a browser without WebAssembly, gets a message rather than a blank canvas. The step
latency of 1 and 2 WebAssembly threads is printed (`pytest -s`).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from infinipaint.minipaint import LAYOUT

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "weights" / "cpu"
DRIVER = Path(__file__).with_name("page_drive.mjs")
NODE = shutil.which("node")
CHROMIUM = os.environ.get("INFINIPAINT_CHROMIUM", "/usr/bin/chromium")
SCREEN = 224

if NODE is None:
    pytestmark = [pytest.mark.slow, pytest.mark.skip(reason="node is not on PATH: cannot drive a browser "
                                                          "(.ci/run installs nodejs and npm)")]
elif not os.access(CHROMIUM, os.X_OK):
    pytestmark = [pytest.mark.slow, pytest.mark.skip(reason=f"no Chromium at {CHROMIUM} (apt-get install chromium; "
                                                          ".ci/run installs it; or set INFINIPAINT_CHROMIUM)")]


# ---------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    from infinipaint.web.commands import NPM_DIR, export_web

    if not (NPM_DIR / "node_modules" / "playwright-core" / "package.json").is_file():
        subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=NPM_DIR, check=True)
    return export_web(MODEL, tmp_path_factory.mktemp("web") / "site")


def _serve(folder: Path):
    from infinipaint.web.commands import make_server

    server = make_server(folder, port=0, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


@pytest.fixture(scope="session")
def url(site):
    server, address = _serve(site)
    yield address
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def torch_model():
    from infinipaint.models.world_model import WorldModel

    return WorldModel.load(MODEL, bf16=False)


@pytest.fixture(scope="session")
def first_frame(site) -> np.ndarray:
    return np.fromfile(site / "first_frame.rgb", np.uint8).reshape(SCREEN, SCREEN, 3)


# ----------------------------------------------------------------------------------- helpers
def drive(url: str, ops: list[dict], init_script: str | None = None, timeout_s: float = 240) -> dict:
    """Open the page in headless Chromium, play `ops` (page_drive.mjs), return what it reports."""
    plan = {"url": url, "chromium": CHROMIUM, "ops": ops, "init_script": init_script, "timeout_ms": int(timeout_s * 1000)}
    proc = subprocess.run([NODE, str(DRIVER)], input=json.dumps(plan), capture_output=True, text=True,
                          timeout=timeout_s + 60, cwd=ROOT, check=False)
    assert proc.returncode == 0, f"page_drive.mjs failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    result = json.loads(proc.stdout)
    assert result["error"] is None, result["error"] + "\n" + "\n".join(result["console"][-20:])
    return result


def frame_of(b64: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(b64), np.uint8).reshape(SCREEN, SCREEN, 3)


def drag(points: list[tuple[int, int]], hold_ms: int = 150, every_ms: int = 100) -> list[dict]:
    """Pointer operations of a drag through `points` (screen px), slow enough that the page's
    80-ms sampling sees every point, then a release."""
    (x, y), ops = points[0], []
    ops += [{"op": "move", "x": x, "y": y}, {"op": "wait", "ms": hold_ms}, {"op": "down"}, {"op": "wait", "ms": hold_ms}]
    for x, y in points[1:]:
        ops += [{"op": "move", "x": x, "y": y}, {"op": "wait", "ms": every_ms}]
    return ops + [{"op": "up"}, {"op": "wait", "ms": hold_ms}]


def click(x: int, y: int) -> list[dict]:
    return [{"op": "move", "x": x, "y": y}, {"op": "wait", "ms": 150}, {"op": "down"}, {"op": "wait", "ms": 150},
            {"op": "up"}, {"op": "wait", "ms": 150}]


def centre(name: str) -> tuple[int, int]:
    x, y, w, h = LAYOUT.rect(name)
    return x + w // 2, y + h // 2


def line(x0: int, x1: int, y: int, every: int = 10) -> list[tuple[int, int]]:
    return [(x, y) for x in range(x0, x1 + 1, every)]


def canvas_mask() -> np.ndarray:
    x, y, w, h = LAYOUT.rect("canvas")
    m = np.zeros((SCREEN, SCREEN), bool)
    m[y:y + h, x:x + w] = True
    return m


def rollout(wm, first: np.ndarray, steps: list[list[int]]) -> np.ndarray:
    frame = wm.reset(first)
    for s in steps:
        frame = wm.step(tuple(s))
    return frame


def identical(a: np.ndarray, b: np.ndarray) -> float:
    return float((a == b).all(-1).mean())


# ------------------------------------------------------------------------------------- tests
def test_a_drag_paints_where_it_went_and_reset_clears_it(url):
    y, x0, x1 = 110, 50, 170
    r = drive(url, [{"op": "snapshot"}, *drag(line(x0, x1, y)), {"op": "idle"}, {"op": "snapshot"},
                    {"op": "reset"}, {"op": "wait", "ms": 100}, {"op": "idle"}])
    before, after = (frame_of(s["frame"]) for s in r["snapshots"])
    steps = r["snapshots"][1]["steps"]
    assert [1, 0] == sorted({s[2] for s in steps}, reverse=True), steps  # a drag and its release
    path = after[y - 1:y + 2, x0 + 4:x1 - 3]
    assert (path.astype(int).sum(-1) < 150).mean() > 0.95, "the drag's path is not dark"
    assert (before[y - 1:y + 2, x0 + 4:x1 - 3].astype(int).sum(-1) > 600).all()  # it was white before
    far = canvas_mask()
    far[y - 16:y + 17, x0 - 16:x1 + 17] = False
    unchanged = (before == after).all(-1)[far].mean()
    assert unchanged > 0.995, f"only {unchanged:.2%} of the canvas away from the drag unchanged"
    # Reset: the first frame again, no steps.
    assert r["steps"] == [] and r["latency"]["count"] == 0
    assert (frame_of(r["frame"]) == before).all()


def test_a_swatch_then_a_drag_paints_in_its_colour(url):
    colour = 1  # red; colour 0 (black) is the one selected after a reset
    y, x0, x1 = 150, 50, 170
    r = drive(url, [*click(*centre(f"color{colour}")), *drag(line(x0, x1, y))])
    frame = frame_of(r["frame"]).astype(int)
    path = frame[y - 1:y + 2, x0 + 4:x1 - 3]
    close = (np.abs(path - np.array(LAYOUT.colors[colour])).max(-1) <= 40).mean()
    assert close > 0.9, f"only {close:.0%} of the drag's path is in colour {LAYOUT.colors[colour]}"


def recording() -> list[dict]:
    """A pointer session touching every kind of step: hovers, a quick click, strokes in two colours,
    a drag leaving the canvas, a slider press, a stroke with a bigger brush."""
    ops = [{"op": "move", "x": 120, "y": 120}, {"op": "wait", "ms": 100}, {"op": "move", "x": 140, "y": 90},
           {"op": "wait", "ms": 100}]
    ops += [{"op": "move", "x": 40, "y": 60}, {"op": "wait", "ms": 120}, {"op": "down"}, {"op": "wait", "ms": 20},
            {"op": "up"}, {"op": "wait", "ms": 150}]  # a click shorter than one sampling interval
    ops += drag([(30, 80), (60, 100), (90, 130), (60, 160), (30, 190)])
    ops += click(*centre("color3")) + drag([(150, 60), (190, 80), (223, 100), (240, 130), (200, 170)], every_ms=90)
    ops += [{"op": "snapshot"}]
    sx, sy, sw, sh = LAYOUT.rect("slider")
    ops += click(sx + sw - 6, sy + sh // 2) + drag([(100, 200), (140, 170), (180, 200)], every_ms=120)
    return ops


def test_the_page_equals_the_pytorch_model(site, url, torch_model, first_frame):
    """The page's frames (mid-session and last) against the PyTorch model in fp32 and the Python
    ONNX backend, rolled through the steps the page ran."""
    from infinipaint.onnx_backend import OnnxWorldModel

    r = drive(url, recording())
    meta = json.loads((site / "model" / "model.json").read_text())
    if meta.get("decode_radius") is not None and meta["graphs"]["decoder"]["inputs"][0]["shape"][2:] == [None, None]:
        assert r["partial"], "a decoder of any size and a decode radius, yet the page decodes whole frames"
    onnx_model = OnnxWorldModel.load(site / "model", threads=1)
    shares = {"PyTorch fp32": [], "onnxruntime (Python)": []}
    for s in [*r["snapshots"], r]:
        page = frame_of(s["frame"])
        shares["PyTorch fp32"].append(identical(page, rollout(torch_model, first_frame, s["steps"])))
        shares["onnxruntime (Python)"].append(identical(page, rollout(onnx_model, first_frame, s["steps"])))
    print(f"\nbrowser vs Python after {len(r['snapshots'][0]['steps'])} and {len(r['steps'])} steps, identical pixels: "
          + "; ".join(f"{k} " + ", ".join(f"{v:.4%}" for v in vs) for k, vs in shares.items())
          + f" (mean step {r['latency']['mean']:.1f} ms, {'partial' if r['partial'] else 'whole-frame'} decoding, "
          f"{r['dropped']} samples dropped)")
    assert len(r["steps"]) > 40 and any(s[2] == 0 for s in r["steps"]) and any(s[2] == 1 for s in r["steps"])
    assert min(shares["PyTorch fp32"]) >= 0.999 and min(shares["onnxruntime (Python)"]) >= 0.999


def test_threads_latency(url, torch_model, first_frame):
    """One and two WebAssembly threads: both report what they run on, give the PyTorch frames, and
    their step latency is printed."""
    ops = drag([(40 + 8 * i, 60 + (i % 5) * 30) for i in range(20)], every_ms=90)
    lines = []
    for threads in (1, 2):
        r = drive(f"{url}?threads={threads}", ops)
        assert r["isolated"] is True, "the page is not cross-origin isolated: no threads"
        assert r["threads"] == threads
        assert identical(frame_of(r["frame"]), rollout(torch_model, first_frame, r["steps"])) >= 0.999
        t = np.array(r["timings"])
        drawn = np.array([p[1] > 1 for p in r["phases"]])  # the steps that decoded
        lines.append(f"{threads} thread{'s' if threads > 1 else ''}: {len(t)} steps, median {np.median(t):.1f} ms, "
                     f"mean {t.mean():.1f} ms (steps that decode: median {np.median(t[drawn]):.1f} ms; "
                     f"step.onnx median {np.median([p[0] for p in r['phases']]):.1f} ms; "
                     f"{'partial' if r['partial'] else 'whole-frame'} decoding, {r['dropped']} samples dropped)")
    print("\nstep latency in headless Chromium: " + "; ".join(lines))


def test_missing_model_shows_a_message(site, tmp_path):
    broken = tmp_path / "site"
    shutil.copytree(site, broken, copy_function=os.link if os.stat(site).st_dev == os.stat(tmp_path).st_dev else shutil.copy2)
    (broken / "model" / "model.json").unlink()
    server, address = _serve(broken)
    try:
        r = drive(address, [], timeout_s=60)
    finally:
        server.shutdown()
        server.server_close()
    assert not r["ready"]
    m = r["message"]
    assert m["visible"] and m["error"] and "model/model.json" in m["text"] and "404" in m["text"], m


def test_no_webassembly_shows_a_message(url):
    r = drive(url, [], init_script="delete window.WebAssembly;", timeout_s=60)
    m = r["message"]
    assert not r["ready"] and m["visible"] and m["error"] and "WebAssembly" in m["text"], m
