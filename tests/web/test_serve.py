"""`infinipaint serve` (headers, MIME types, the address it binds and prints) and the refusals of
`infinipaint export web` (a model folder without the networks, an occupied output folder, no npm)."""

from __future__ import annotations

import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest

from infinipaint.cli import build_parser, main
from infinipaint.errors import CheckpointError, CommandError, InfinipaintError
from infinipaint.web import commands as web

FILES = {"index.html": "text/html", "app.js": "text/javascript", "actionstream.js": "text/javascript",
         "ort/ort.wasm.min.mjs": "text/javascript", "ort/ort-wasm-simd-threaded.wasm": "application/wasm",
         "model/model.json": "application/json", "style.css": "text/css",
         "model/step.onnx": "application/octet-stream", "first_frame.rgb": "application/octet-stream"}


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "site"
    for name in FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"\0asm" if name.endswith(".wasm") else b"x")
    return root


@pytest.fixture
def served(site):
    server = web.make_server(site, port=0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, b""


def test_headers_and_mime_types(served):
    for name, mime in FILES.items():
        status, headers, _ = get(served + name)
        assert status == 200, name
        assert headers.get_content_type() == mime, name
        assert headers["Cross-Origin-Opener-Policy"] == "same-origin", name
        assert headers["Cross-Origin-Embedder-Policy"] == "require-corp", name
    status, headers, _ = get(served)  # the folder: its index.html
    assert status == 200 and headers.get_content_type() == "text/html"
    status, headers, _ = get(served + "missing.onnx")
    assert status == 404 and headers["Cross-Origin-Embedder-Policy"] == "require-corp"


def test_serve_defaults():
    args = build_parser().parse_args(["serve", "site"])
    assert (args.host, args.port, args.site) == ("127.0.0.1", 8000, "site")


def test_serve_port_0_prints_its_url(site):
    proc = subprocess.Popen([sys.executable, "-m", "infinipaint.cli", "serve", str(site), "--port", "0", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "http://127.0.0.1:" in line, line
        url = line[line.index("http://"):].split()[0]
        status, headers, body = get(url + "ort/ort-wasm-simd-threaded.wasm")
        assert status == 200 and headers.get_content_type() == "application/wasm" and body == b"\0asm"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_serve_refuses_a_missing_folder(tmp_path, capsys):
    with pytest.raises(CommandError, match="no such folder"):
        web.make_server(tmp_path / "nope", port=0)
    assert main(["serve", str(tmp_path / "nope"), "--port", "0"]) == 2
    assert "no such folder" in capsys.readouterr().err


@pytest.mark.parametrize("present", [(), ("vae.json", "vae.safetensors"), ("vae.json", "dynamics.json")])
def test_export_web_refuses_an_incomplete_model(tmp_path, present):
    model = tmp_path / "model"
    model.mkdir()
    for name in present:
        (model / name).write_text("{}")
    out = tmp_path / "site"
    with pytest.raises(CheckpointError, match="not a complete world model, missing") as e:
        web.export_web(model, out)
    assert isinstance(e.value, InfinipaintError)
    assert "dynamics.safetensors" in str(e.value)
    assert not out.exists()  # refused before any work


def test_export_web_refuses_a_missing_model_dir_on_the_command_line(tmp_path, capsys):
    assert main(["export", "web", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "site")]) == 2
    err = capsys.readouterr().err
    assert "no such model directory" in err and "Traceback" not in err
    assert not (tmp_path / "site").exists()


def test_export_web_refuses_an_occupied_folder(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    for name in web.MODEL_FILES:
        (model / name).write_text("{}")
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.tex").write_text("mine")
    with pytest.raises(CommandError, match="not empty and not a site"):
        web.export_web(model, out)
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]


def test_runtime_without_npm_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "package.json").write_text("{}")
    monkeypatch.setattr(web.shutil, "which", lambda name: None)
    with pytest.raises(CommandError, match="npm is missing"):
        web.runtime_dir(tmp_path)


def test_the_page_files_ship():
    for name in web.PAGE_FILES:
        assert (web.SITE_SOURCE / name).is_file(), name
    for name in ("package.json", "package-lock.json"):
        assert (web.NPM_DIR / name).is_file(), name
