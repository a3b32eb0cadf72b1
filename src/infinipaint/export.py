"""`infinipaint export onnx|web`: the world model as ONNX graphs any runtime can load.

    infinipaint export onnx --model weights/cpu --out out/onnx
    infinipaint export web --model weights/cpu --out site/      # the browser page (infinipaint.web)

    from infinipaint.export import export_onnx
    export_onnx("weights/cpu", "out/onnx")

Three graphs, fp32, opset `OPSET`, and `model.json` describing them:

- `encoder.onnx`: `frames` uint8 (B, 224, 224, 3) -> `latent` float32 (B, C, 56, 56).
- `step.onnx`: `latent` float32 (1, C, 56, 56), `prev` and `action` int64 (1, 3) (the previous
  and this `(x, y, down)` step), `origin` int64 (1, 2) (the drag origin as of `prev`) ->
  `next_latent` float32 (1, C, 56, 56) and `next_origin` int64 (1, 2), fed back as `origin`. One
  dynamics step as `WorldModel.step` takes it, all in the graph: the action planes, the drag-origin
  update, the window of cells around the cursors with the whole latent read by the context, and
  the discrete next latent (the most likely FSQ value, with the model's keep margin).
- `decoder.onnx`: `latent` float32 (B, C, 56, 56) -> `frame` uint8 (B, 224, 224, 3).

The decoder takes a latent of any size up to 56 x 56 cells (4 pixels a cell): with a local decoder
(`decode_radius` in model.json, None otherwise) a step decodes only the cells around those it
changed, with their whole receptive field, as `WorldModel.step` does (`infinipaint.onnx_backend`
and the browser page both do).

`model.json`: {"format": "infinipaint-onnx", "version", "screen", "grid", "latent_channels",
"reset_action" (the `prev` of the first step), "reset_origin" (its `origin`), "window",
"keep_margin", "opset", "decode_radius" (how many cells around a changed cell the decoder may
repaint; None: decode whole frames), "graphs" (each graph's inputs and outputs: name, dtype,
shape, None for a free dimension), "files" (name -> bytes, sha256), "source" (the model folder and the sha256 of its two
weight files), "exported" (UTC time), "infinipaint" (version)}. It is written last: a folder is a
complete export exactly when its model.json names files of those sizes and checksums
(`infinipaint.onnx_backend` checks them).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from infinipaint.errors import CheckpointError, CommandError

FORMAT, VERSION = "infinipaint-onnx", 1
OPSET = 18
GRAPHS = ("encoder", "step", "decoder")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="the world model as ONNX graphs, or as a browser page that runs them",
                       description=__doc__.split("\n")[0])
    kinds = p.add_subparsers(dest="kind", required=True)
    onnx = kinds.add_parser("onnx", help="encoder, one dynamics step and decoder as ONNX graphs + model.json")
    web = kinds.add_parser("web", help="a static page where the network is the paint program (serve it with `infinipaint serve`)")
    for q in (onnx, web):
        q.add_argument("--model", default="weights/cpu", help="model directory (vae.* + dynamics.*)")
        q.add_argument("--out", required=True, help="folder to write (created)")
        q.add_argument("--window", type=int, default=None, help="cells a side the step runs on (default: the trained crop; 0: whole latent)")
        q.add_argument("--keep-margin", type=float, default=None, help="override the model's keep margin")
    onnx.set_defaults(func=cmd_onnx)
    web.set_defaults(func=cmd_web)


def cmd_onnx(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    info = export_onnx(args.model, args.out, window=args.window, keep_margin=args.keep_margin)
    sizes = ", ".join(f"{name} {f['bytes'] / 2**20:.2f} MiB" for name, f in info["files"].items())
    print(f"exported {args.model} to {args.out} in {time.perf_counter() - started:.1f} s: {sizes}")
    return 0


def cmd_web(args: argparse.Namespace) -> int:
    from infinipaint.web.commands import export_web

    started = time.perf_counter()
    site = export_web(Path(args.model), Path(args.out), window=args.window, keep_margin=args.keep_margin)
    print(f"wrote the page to {site} in {time.perf_counter() - started:.1f} s; open it with: infinipaint serve {site}")
    return 0


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _graph_modules(wm: Any) -> dict[str, Any]:
    """The three graphs of a WorldModel as torch modules (built here so torch loads only on use)."""
    import torch
    import torch.nn as nn

    from infinipaint.models.encoding import next_origins
    from infinipaint.models.world_model import window_corner

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.vae = wm.vae

        def forward(self, frames: torch.Tensor) -> torch.Tensor:
            return self.vae.encode(frames.permute(0, 3, 1, 2).float() / 255.0)

    class Decoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.vae = wm.vae

        def forward(self, latent: torch.Tensor) -> torch.Tensor:
            return self.vae.decode_uint8(latent)

    class Step(nn.Module):
        """`WorldModel.step` without the decode: `advance` for one sample, its window as index
        arithmetic (gather the window's rows and columns, put the prediction back with a mask)."""

        def __init__(self) -> None:
            super().__init__()
            self.dynamics = wm.dynamics

        def forward(self, latent: torch.Tensor, prev: torch.Tensor, action: torch.Tensor,
                    origin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            origin = next_origins(origin, prev, action)
            n, w = latent.shape[-1], wm.window
            planes = self.dynamics.action_input(prev, action, n, origin)
            if not 0 < w < n:
                return self.dynamics.step(latent, planes), origin
            corner = window_corner(prev, action, n, w)[0]  # (x0, y0)
            cells = torch.arange(w, device=latent.device)
            rows, cols = corner[1] + cells, corner[0] + cells

            def crop(t: torch.Tensor) -> torch.Tensor:
                return t.index_select(2, rows).index_select(3, cols)

            pred = self.dynamics.step(crop(latent), crop(planes), whole=latent, whole_planes=planes)
            grid = torch.arange(n, device=latent.device)
            r, c = grid - corner[1], grid - corner[0]  # position of each row / column in the window
            spread = pred.index_select(2, r.clamp(0, w - 1)).index_select(3, c.clamp(0, w - 1))
            inside = ((r >= 0) & (r < w))[:, None] & ((c >= 0) & (c < w))[None, :]
            return torch.where(inside, spread, latent), origin

    return {"encoder": Encoder().eval(), "step": Step().eval(), "decoder": Decoder().eval()}


def export_onnx(model_dir: str | Path, out_dir: str | Path, window: int | None = None,
                keep_margin: float | None = None) -> dict[str, Any]:
    """Write encoder.onnx, step.onnx, decoder.onnx and model.json for the model in `model_dir`
    (CheckpointError where it is not a complete model folder); returns model.json's content."""
    import logging
    import warnings

    import torch

    from infinipaint.files import atomic_write
    from infinipaint.models.checkpoint import read_info
    from infinipaint.models.world_model import SCREEN, WorldModel

    model_dir, out = Path(model_dir), Path(out_dir)
    if (model_dir / "model").is_dir() and not (model_dir / "vae.json").exists():
        model_dir = model_dir / "model"  # a training run's folder stands for its model/
    if (model_dir / FORMAT_FILE).exists():
        raise CheckpointError(f"{model_dir}: already an ONNX export (model.json); export a PyTorch model folder "
                              "(vae.* + dynamics.*)")
    ours = {FORMAT_FILE, *(f"{g}.onnx" for g in GRAPHS)}
    others = sorted(p.name for p in out.iterdir() if p.name not in ours) if out.is_dir() else []
    if others or out.exists() and not out.is_dir():
        raise CommandError(f"{out}: not a folder of an ONNX export ({'it holds ' + ', '.join(others[:3]) if others else 'a file'}); "
                           "pick an empty or new folder")
    try:
        wm = WorldModel.load(model_dir, device="cpu", bf16=False, window=window, keep_margin=keep_margin)
    except CheckpointError:
        raise
    except ValueError as e:  # a window or keep margin out of range
        raise CommandError(str(e)) from None
    vae_info, dyn_info = read_info(model_dir, "vae"), read_info(model_dir, "dynamics")
    c, n = wm.vae.config.latent_channels, SCREEN // 4
    examples = {
        "encoder": (torch.zeros(2, SCREEN, SCREEN, 3, dtype=torch.uint8),),  # batch 2: a free batch size
        "step": (torch.zeros(1, c, n, n), torch.tensor([wm.reset_action]), torch.tensor([wm.reset_action]),
                 wm.reset_origin.clone()),
        "decoder": (torch.zeros(2, c, n - 8, n - 4),),  # free batch and sides
    }
    names = {"encoder": (["frames"], ["latent"]), "step": (["latent", "prev", "action", "origin"], ["next_latent", "next_origin"]),
             "decoder": (["latent"], ["frame"])}
    batch = torch.export.Dim("batch", max=4096)
    # The decoder takes any window of the latent: a step decodes only around the cells it changed.
    side = {2: torch.export.Dim("rows", max=n), 3: torch.export.Dim("cols", max=n)}
    dynamic = {"encoder": {"frames": {0: batch}}, "decoder": {"latent": {0: batch, **side}}, "step": None}
    out.mkdir(parents=True, exist_ok=True)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # the exporter's notes on its own internals
    files, graphs = {}, {}
    for name, module in _graph_modules(wm).items():
        inputs, outputs = names[name]
        path = out / f"{name}.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(module, examples[name], input_names=inputs, output_names=outputs,
                                        dynamic_shapes=dynamic[name], opset_version=OPSET, dynamo=True,
                                        optimize=True, verbose=False)
        atomic_write(path, program.model_proto.SerializeToString())
        files[path.name] = {"bytes": path.stat().st_size, "sha256": _sha256(path)}
        graphs[name] = _signature(path)
    info = {
        "format": FORMAT, "version": VERSION, "screen": SCREEN, "grid": n, "latent_channels": c,
        "reset_action": list(wm.reset_action), "reset_origin": [int(v) for v in wm.reset_origin[0]],
        "window": int(wm.window) if 0 < wm.window < n else 0, "keep_margin": float(wm.dynamics.config.keep_margin), "opset": OPSET,
        "decode_radius": wm.decode_radius,
        "graphs": graphs, "files": files,
        "source": {"model": str(model_dir), "vae_sha256": vae_info["weights"]["sha256"],
                   "dynamics_sha256": dyn_info["weights"]["sha256"]},
        "exported": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "infinipaint": _version(),
    }
    atomic_write(out / FORMAT_FILE, (json.dumps(info, indent=2) + "\n").encode())
    return info


FORMAT_FILE = "model.json"


def _signature(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Inputs and outputs of an ONNX file: name, dtype, shape (None for a symbolic dimension)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)

    def describe(values: Any) -> list[dict[str, Any]]:
        out = []
        for v in values:
            t = v.type.tensor_type
            shape = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
            out.append({"name": v.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name, "shape": shape})
        return out

    return {"inputs": describe(model.graph.input), "outputs": describe(model.graph.output)}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("infinipaint")
    except PackageNotFoundError:
        return "unknown"



