"""The browser page's commands: `serve` (registered here) and `export_web` (the `web` subcommand of
`infinipaint export`, registered by `infinipaint.export`).

    infinipaint export web --model weights/cpu --out site/
    infinipaint serve site/ [--port 8000] [--host 127.0.0.1]    # --port 0: any free port

`serve` is a small static file server: it sends `Cross-Origin-Opener-Policy: same-origin` and
`Cross-Origin-Embedder-Policy: require-corp` (the page is then cross-origin isolated, which the
WebAssembly runtime needs for threads: SharedArrayBuffer), the right MIME types (`.wasm`
application/wasm, `.mjs`/`.js` text/javascript) and `Cache-Control: no-cache` (a new export is
picked up on reload). It binds 127.0.0.1 unless told otherwise.

Nothing heavy is imported at module level: `infinipaint --help` stays instant.
"""

from __future__ import annotations

import argparse
import http.server
import json
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path

from infinipaint.errors import CheckpointError, CommandError

HERE = Path(__file__).resolve().parent
SITE_SOURCE = HERE / "site"  # the page: index.html, app.js, actionstream.js, style.css
NPM_DIR = HERE / "npm"  # package.json + package-lock.json: onnxruntime-web (and the tests' playwright-core)
PAGE_FILES = ("index.html", "app.js", "actionstream.js", "style.css")
# The WebAssembly build of onnxruntime-web: the ES module, its Emscripten glue (also the code of
# its worker threads) and the SIMD + threads binary. Nothing else of the package is needed.
RUNTIME_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
MODEL_FILES = ("vae.json", "vae.safetensors", "dynamics.json", "dynamics.safetensors")
FIRST_FRAME = "first_frame.rgb"  # Minipaint's reset screen, raw uint8 224 x 224 x 3 (row-major RGB)

HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-cache",
}
MIME_TYPES = {
    ".wasm": "application/wasm",
    ".mjs": "text/javascript",
    ".js": "text/javascript",
    ".json": "application/json",
    ".html": "text/html; charset=utf-8",
    ".css": "text/css",
    ".onnx": "application/octet-stream",
    ".rgb": "application/octet-stream",
}


# ------------------------------------------------------------------------------------- serve
class SiteHandler(http.server.SimpleHTTPRequestHandler):
    """Static files of one folder, with the cross-origin isolation headers and fixed MIME types."""

    quiet = False

    def end_headers(self) -> None:
        for name, value in HEADERS.items():
            self.send_header(name, value)
        super().end_headers()

    def guess_type(self, path: str) -> str:
        return MIME_TYPES.get(Path(path).suffix.lower()) or super().guess_type(path)

    def list_directory(self, path):  # a site is its files: no folder listings
        self.send_error(404, "No such file")
        return None

    def log_message(self, format: str, *args) -> None:
        if not self.quiet:
            super().log_message(format, *args)


def make_server(site: str | Path, host: str = "127.0.0.1", port: int = 8000,
                quiet: bool = False) -> http.server.ThreadingHTTPServer:
    """A server of `site` (not yet serving: call `serve_forever`); port 0 picks a free port
    (`server.server_address[1]`). CommandError when `site` is not a folder or the port is taken."""
    site = Path(site)
    if not site.is_dir():
        raise CommandError(f"{site}: no such folder (write a site with `infinipaint export web --out {site}`)")
    handler = type("Handler", (SiteHandler,), {"quiet": quiet})
    try:
        return http.server.ThreadingHTTPServer((host, port), partial(handler, directory=str(site)))
    except OSError as e:
        raise CommandError(f"cannot serve on {host}:{port}: {e.strerror or e}") from None


def serve(args: argparse.Namespace) -> int:
    site = Path(args.site)
    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port must be 0..65535 (0: any free port), got {args.port}")
    server = make_server(site, args.host, args.port, quiet=args.quiet)
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in host else host
    if not (site / "index.html").is_file():
        print(f"infinipaint serve: warning: {site} has no index.html (write one with `infinipaint export web`)",
              file=sys.stderr)
    print(f"serving {site} at http://{shown}:{port}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve a site of `export web` (the browser page) on this machine")
    p.add_argument("site", help="the folder `infinipaint export web --out` wrote")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0: any free port)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--quiet", action="store_true", help="do not log every request")
    p.set_defaults(func=serve)


# -------------------------------------------------------------------------------- export web
def runtime_dir(npm_dir: Path = NPM_DIR) -> Path:
    """The `dist` folder of onnxruntime-web, installed from the lockfile (`npm ci`) when absent."""
    dist = npm_dir / "node_modules" / "onnxruntime-web" / "dist"
    if all((dist / f).is_file() for f in RUNTIME_FILES):
        return dist
    npm = shutil.which("npm")
    if npm is None:
        raise CommandError(f"the browser runtime (onnxruntime-web) is not installed in {npm_dir}/node_modules and "
                           "npm is missing: install Node.js and npm (e.g. `apt-get install nodejs npm`), then run again")
    command = [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"]
    print(f"installing onnxruntime-web from the lockfile: npm {' '.join(command[1:])} (in {npm_dir})", flush=True)
    try:
        subprocess.run(command, cwd=npm_dir, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise CommandError(f"`npm ci` in {npm_dir} failed ({e}): the browser runtime could not be installed") from None
    if not all((dist / f).is_file() for f in RUNTIME_FILES):
        raise CommandError(f"`npm ci` in {npm_dir} did not install {', '.join(RUNTIME_FILES)} of onnxruntime-web")
    return dist


def model_source(model_dir: str | Path) -> Path:
    """The directory holding vae.* and dynamics.* (a run folder stands for its model/), or
    CheckpointError naming what is missing."""
    d = Path(model_dir)
    if not d.is_dir():
        raise CheckpointError(f"{d}: no such model directory")
    if not (d / "dynamics.json").is_file() and (d / "model" / "dynamics.json").is_file():
        d = d / "model"  # a run folder
    missing = [f for f in MODEL_FILES if not (d / f).is_file()]
    if missing:
        raise CheckpointError(f"{d}: not a complete world model, missing {', '.join(missing)} "
                              "(the browser page needs both networks: vae.* and dynamics.*)")
    return d


def _check_out(out_dir: Path) -> None:
    """Refuse to write into a folder that holds anything `export web` does not write (an earlier
    site, complete or not, is written over)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise CommandError(f"{out_dir}: a file, not a folder")
    ours = {*PAGE_FILES, FIRST_FRAME, "model", "ort"}
    others = sorted(p.name for p in out_dir.iterdir() if p.name not in ours) if out_dir.is_dir() else []
    if others:
        raise CommandError(f"{out_dir}: not empty and not a site of `export web` (it holds {', '.join(others[:3])}"
                           f"{', ...' if len(others) > 3 else ''}); pick an empty or new folder")


def first_frame() -> bytes:
    """Minipaint's reset screen (what the viewer's `dream` starts from), as raw RGB bytes."""
    from infinipaint.minipaint import Minipaint

    frame = Minipaint().reset()
    return frame.tobytes()


def _mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def export_web(model_dir: Path, out_dir: Path, window: int | None = None, keep_margin: float | None = None) -> Path:
    """Write the browser page of the world model in `model_dir` into `out_dir` (`window` and
    `keep_margin` as `export_onnx` takes them); returns `out_dir`."""
    model_dir, out_dir = model_source(model_dir), Path(out_dir)
    _check_out(out_dir)
    for f in PAGE_FILES:
        if not (SITE_SOURCE / f).is_file():
            raise CommandError(f"{SITE_SOURCE / f} is missing: this installation of infinipaint is incomplete")
    dist = runtime_dir()

    from infinipaint.export import export_onnx

    out_dir.mkdir(parents=True, exist_ok=True)
    export_onnx(model_dir, out_dir / "model", window=window, keep_margin=keep_margin)
    ort = out_dir / "ort"
    ort.mkdir(exist_ok=True)
    for f in RUNTIME_FILES:
        shutil.copyfile(dist / f, ort / f)
    version = json.loads((dist.parent / "package.json").read_text())["version"]
    (ort / "NOTICE.txt").write_text(f"onnxruntime-web {version} (https://github.com/microsoft/onnxruntime), "
                                    "MIT License, Copyright (c) Microsoft Corporation.\n"
                                    f"Files: {', '.join(RUNTIME_FILES)}\n")
    (out_dir / FIRST_FRAME).write_bytes(first_frame())
    for f in sorted(PAGE_FILES, key=lambda f: f == "index.html"):  # index.html last
        shutil.copyfile(SITE_SOURCE / f, out_dir / f)
    print(f"{out_dir}: {_mib(out_dir):.1f} MiB (the model {_mib(out_dir / 'model'):.1f} MiB, "
          f"onnxruntime-web {version} {_mib(ort):.1f} MiB)")
    return out_dir
