"""Model files: weights as safetensors plus a JSON of config and metadata, written atomically.

    from infinipaint.models.checkpoint import save_weights, load_weights, load_state_strict
    save_weights(model, "weights/cpu", "vae", config=asdict(cfg), meta={"step": 1000})
    state, info = load_weights("weights/cpu", "vae")      # verified bytes, parsed JSON
    load_state_strict(model, state, source="weights/cpu/vae.safetensors")

`DIR/NAME.safetensors` holds the tensors; `DIR/NAME.json` holds {"format", "kind", "config", "meta",
"weights": {"file", "bytes", "sha256"}}. The JSON is written last, so a model directory is complete
exactly when its JSON names a weights file with matching size and checksum. Every failure to load
(missing file, truncated or tampered bytes, not safetensors, mismatched keys or shapes) raises
`CheckpointError` with the file and, where it applies, the tensor key.

Wherever a model directory is read, a training run's folder stands for its `model/` (`runs/NAME`
for `runs/NAME/model`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ..errors import CheckpointError
from ..files import atomic_write

FORMAT = "infinipaint-weights/1"


def state_bytes(model: torch.nn.Module) -> bytes:
    """The model's state dict as safetensors bytes (contiguous copies, so channels_last is fine)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return st_save(state)


def save_weights(
    model: torch.nn.Module, directory: str | Path, name: str, config: dict[str, Any], meta: dict[str, Any] | None = None
) -> Path:
    """Write `DIR/NAME.safetensors` then `DIR/NAME.json` (config, meta, size, sha256); returns the JSON path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    data = state_bytes(model)
    weights = directory / f"{name}.safetensors"
    atomic_write(weights, data)
    info = {
        "format": FORMAT,
        "kind": name,
        "config": config,
        "meta": meta or {},
        "weights": {"file": weights.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()},
    }
    path = directory / f"{name}.json"
    atomic_write(path, (json.dumps(info, indent=2, sort_keys=True) + "\n").encode())
    return path


def model_folder(directory: str | Path, name: str) -> Path:
    """The folder that holds `NAME.json`: `directory`, or its `model/` when `directory` is a
    training run's folder (`runs/NAME`) without one of its own."""
    d = Path(directory)
    if not (d / f"{name}.json").is_file() and (d / "model" / f"{name}.json").is_file():
        return d / "model"
    return d


def read_info(directory: str | Path, name: str) -> dict[str, Any]:
    """Parse and check `DIR/NAME.json` (format, kind and weights record); CheckpointError if unusable.
    A run folder stands for its `model/` (`model_folder`)."""
    path = model_folder(directory, name) / f"{name}.json"
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file (expected a {name} model directory)")
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an infinipaint weights file (format {info.get('format') if isinstance(info, dict) else None!r}, expected {FORMAT!r})")
    if info.get("kind") != name:
        raise CheckpointError(f"{path}: holds a {info.get('kind')!r} model, expected {name!r}")
    w = info.get("weights")
    if not isinstance(w, dict) or not {"file", "bytes", "sha256"} <= set(w) or not isinstance(info.get("config"), dict):
        raise CheckpointError(f"{path}: missing 'config' or 'weights' record")
    return info


def load_weights(directory: str | Path, name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read and verify `DIR/NAME.safetensors` against its JSON; returns (state dict on CPU, info).
    A file of another size than the JSON records is refused before it is read."""
    info = read_info(directory, name)
    w = info["weights"]
    path = model_folder(directory, name) / Path(str(w["file"])).name
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file (named by {name}.json)")
    size = path.stat().st_size  # before the bytes are read: a file of the wrong size never reaches memory
    if size == w["bytes"]:
        data = path.read_bytes()
        size = len(data)  # what was read, should the file have changed since
    if size != w["bytes"]:
        raise CheckpointError(f"{path}: truncated or wrong file: {size} bytes, {name}.json records {w['bytes']}")
    if hashlib.sha256(data).hexdigest() != w["sha256"]:
        raise CheckpointError(f"{path}: checksum mismatch, the file was modified or corrupted after it was saved")
    try:
        state = st_load(data)
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: not a valid safetensors file ({e})") from None
    return state, info


def load_state_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy `state` into `model`, refusing any missing, unexpected or differently shaped tensor."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing:
        raise CheckpointError(f"{source}: missing tensor {missing[0]!r} ({len(missing)} missing; wrong preset or config?)")
    if unexpected:
        raise CheckpointError(f"{source}: unexpected tensor {unexpected[0]!r} ({len(unexpected)} unexpected; wrong preset or config?)")
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{source}: tensor {k!r} has shape {tuple(state[k].shape)}, the model expects {tuple(v.shape)} (wrong preset or config?)"
            )
    model.load_state_dict(state, strict=True)
