"""The README's picture of the browser page, `docs/web/screenshot.png`: a site of the model is
exported (`export web`) into a temporary folder and served on a free port, and headless Chromium
(`tests/web/page_drive.mjs`) paints a small scripted picture inside the network — a red swatch and a
wavy line, a blue swatch and a circle, a slider press (a bigger brush) and a zigzag — then takes a
full-page screenshot. Prints the PNG's path, the steps the page ran and its mean step latency.
Needs node and Chromium (/usr/bin/chromium or INFINIPAINT_CHROMIUM), as the page's tests do.

    .venv/bin/python scripts/web_screenshot.py [--model weights/cpu] [--out docs/web/screenshot.png]
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from infinipaint.minipaint import LAYOUT
from infinipaint.web.commands import export_web, make_server

ROOT = Path(__file__).resolve().parents[1]
DRIVER = ROOT / "tests" / "web" / "page_drive.mjs"
VIEWPORT = {"width": 760, "height": 840}  # the page is 680 px wide; the full-page shot takes its whole height
EVERY_MS = 90  # between moves: the page samples the pointer every 80 ms, so it sees every point
HOLD_MS = 150


def press(x: int, y: int) -> list[dict]:
    """A click on a control (screen px), held long enough for a sample to see it pressed."""
    return [{"op": "move", "x": x, "y": y}, {"op": "wait", "ms": HOLD_MS}, {"op": "down"},
            {"op": "wait", "ms": HOLD_MS}, {"op": "up"}, {"op": "wait", "ms": HOLD_MS}]


def stroke(points: list[tuple[int, int]]) -> list[dict]:
    """A drag through `points` (screen px, a few apart), one per sampling interval, then a release."""
    (x, y), ops = points[0], []
    ops += [{"op": "move", "x": x, "y": y}, {"op": "wait", "ms": HOLD_MS}, {"op": "down"}, {"op": "wait", "ms": HOLD_MS}]
    for x, y in points[1:]:
        ops += [{"op": "move", "x": x, "y": y}, {"op": "wait", "ms": EVERY_MS}]
    return ops + [{"op": "up"}, {"op": "wait", "ms": HOLD_MS}]


def picture() -> list[dict]:
    """The scripted session: three strokes on the canvas (y 32..223), each after a control press."""
    wave = [(x, round(75 + 14 * math.sin((x - 24) / 14))) for x in range(24, 201, 6)]
    circle = [(round(112 + 38 * math.cos(2 * math.pi * i / 28)), round(140 + 32 * math.sin(2 * math.pi * i / 28)))
              for i in range(29)]
    zigzag = [(30 + 6 * i, 196 + (6 - abs(i % 8 - 4) * 3)) for i in range(28)]
    ops = press(*LAYOUT.center("color1")) + stroke(wave)
    ops += press(*LAYOUT.center("color3")) + stroke(circle)
    ops += press(*LAYOUT.slider_point(LAYOUT.sizes[-3])) + stroke(zigzag)
    return ops + [{"op": "idle"}, {"op": "wait", "ms": 300}]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="weights/cpu", help="the world model the page runs (a model or run folder)")
    p.add_argument("--out", default="docs/web/screenshot.png", help="where the PNG is written")
    p.add_argument("--timeout", type=float, default=300, help="seconds the browser session may take")
    args = p.parse_args()
    node = shutil.which("node")
    chromium = os.environ.get("INFINIPAINT_CHROMIUM", "/usr/bin/chromium")
    if node is None or not os.access(chromium, os.X_OK):
        sys.exit(f"web_screenshot: needs node on PATH and Chromium at {chromium} (apt-get install nodejs chromium)")
    out = Path(args.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="web-screenshot-") as tmp:
        site = export_web(Path(args.model), Path(tmp) / "site")
        server = make_server(site, port=0, quiet=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            plan = {"url": f"http://127.0.0.1:{server.server_address[1]}/", "chromium": chromium, "viewport": VIEWPORT,
                    "timeout_ms": int(args.timeout * 1000),
                    "ops": [*picture(), {"op": "screenshot", "path": str(out)}]}
            (Path(tmp) / "plan.json").write_text(json.dumps(plan))
            proc = subprocess.run([node, str(DRIVER), str(Path(tmp) / "plan.json")], capture_output=True, text=True,
                                  timeout=args.timeout + 60, cwd=ROOT, check=False)
        finally:
            server.shutdown()
            server.server_close()
    if proc.returncode != 0:
        sys.exit(f"web_screenshot: page_drive.mjs failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    r = json.loads(proc.stdout)
    if r["error"] or not r["ready"] or r.get("page_error"):
        why = r["error"] or r.get("page_error") or r["message"]["text"]
        sys.exit(f"web_screenshot: the page did not paint: {why}\n" + "\n".join(r["console"][-20:]))
    print(f"{out}: {len(r['steps'])} steps, mean step {r['latency']['mean']:.1f} ms "
          f"({out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
