"""Training configuration: one dataclass, presets per component, command-line overrides.

    cfg = TRAIN_PRESETS["vae"]["cpu"]
    cfg = replace(cfg, steps=2000)

The resolved config is written to `runs/<name>/config.json` and into every checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from dataclasses import dataclass, field, fields
from typing import Any

from infinipaint.errors import CommandError


EXTRA_KEYS = {"mix"}  # what `TrainConfig.extra` may hold


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000  # optimizer steps in the whole run
    batch_size: int = 16  # samples per step per process
    lr: float = 1e-3  # peak learning rate (AdamW)
    min_lr_ratio: float = 0.1  # cosine decay ends at lr * min_lr_ratio
    warmup: int = 100  # linear warm-up steps
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    grad_clip: float = 1.0  # global grad-norm clip (0 disables)
    precision: str = "auto"  # "bf16" autocast, "fp32", or "auto": bf16 where the device has it natively (`infinipaint.precision`)
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    channels_last: bool = True  # NHWC memory format (fast bf16 convolutions on AMX and GPUs)
    num_workers: int = 0  # DataLoader worker processes (0: load in the training process)
    seed: int = 0  # seeds data order and every random draw, per step
    log_every: int = 10  # steps between metrics.jsonl/TensorBoard lines
    val_every: int = 500  # steps between validations (0: only at the end)
    val_batches: int = 8  # batches per validation
    ckpt_every: int = 250  # steps between training-state checkpoints
    time_limit: float = 0.0  # stop this process (with a checkpoint) after this many minutes (0: no limit)
    extra: dict[str, Any] = field(default_factory=dict)  # component-specific settings: "mix" (`train dynamics --mix`)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be positive")
        if self.lr <= 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError("lr must be positive and min_lr_ratio in [0, 1]")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', got {self.precision!r}")
        if min(self.warmup, self.num_workers, self.val_every, self.val_batches) < 0:
            raise ValueError("warmup, num_workers, val_every and val_batches must be >= 0")
        if self.log_every < 1 or self.ckpt_every < 1:
            raise ValueError("log_every and ckpt_every must be >= 1")
        if set(self.extra) - EXTRA_KEYS:
            raise ValueError(f"unknown extra settings {sorted(set(self.extra) - EXTRA_KEYS)}; known: {sorted(EXTRA_KEYS)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# The command-line help of each field (`add_overrides`), with its unit.
TRAIN_HELP = {
    "steps": "optimizer steps of the whole run (the learning-rate schedule ends there)",
    "batch_size": "samples per step per process",
    "lr": "peak learning rate (AdamW)",
    "min_lr_ratio": "the cosine decay ends at lr x this",
    "warmup": "linear warm-up, in steps",
    "weight_decay": "AdamW decoupled weight decay",
    "grad_clip": "clip the global gradient norm to this (0: no clipping)",
    "precision": "auto (bf16 where the device does it natively), bf16 or fp32",
    "device": "auto, cpu, cuda, cuda:1, ...",
    "channels_last": "NHWC memory format (true/false)",
    "num_workers": "DataLoader worker processes (0: load in the training process)",
    "seed": "seeds the data order and every random draw",
    "log_every": "steps between lines of metrics.jsonl and TensorBoard",
    "val_every": "steps between validations (0: only at the end); a run always validates when it stops",
    "val_batches": "batches per validation",
    "ckpt_every": "steps between checkpoints (ckpt/state.pt and model/)",
    "time_limit": "stop after this many MINUTES of this process (with a checkpoint and a validation; "
                  "continue with --resume); 0: no limit",
    "extra": "component settings as JSON (train dynamics: {\"mix\": {...}}, set by --mix)",
}


TRAIN_PRESETS: dict[str, dict[str, TrainConfig]] = {
    "vae": {
        "tiny": TrainConfig(steps=20, batch_size=4, lr=2e-3, warmup=2, log_every=5, val_every=10,
                            val_batches=2, ckpt_every=10),
        "cpu": TrainConfig(steps=30000, batch_size=16, lr=1e-3, warmup=300, val_every=1000,
                           ckpt_every=250),
        "paper": TrainConfig(steps=100000, batch_size=32, lr=2e-4, warmup=1000, val_every=2000,
                             ckpt_every=1000, num_workers=6),
    },
    "dynamics": {
        "tiny": TrainConfig(steps=20, batch_size=4, lr=2e-3, warmup=2, log_every=5, val_every=10,
                            val_batches=2, ckpt_every=10),
        # the recipe of the shipped weights/cpu dynamics: about 2 h on this project's 2-core CPU
        "cpu": TrainConfig(steps=6800, batch_size=16, lr=1e-3, warmup=300, val_every=1000,
                           ckpt_every=250),
        "paper": TrainConfig(steps=100000, batch_size=64, lr=2e-4, warmup=1000, val_every=2000,
                             ckpt_every=1000, num_workers=6),
    },
}


# ------------------------------------------------------------------ dataclass <-> command line
def _parse(kind: Any, text: str) -> Any:
    """A command-line string as a value of the field's type (JSON for tuples, dicts and optionals)."""
    if kind is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected a boolean, got {text!r}")
    if kind in (int, float, str):
        return kind(text)
    return json.loads(text)


def _with_changes(config: Any, texts: dict[str, str], flag: str) -> Any:
    """A validated copy of `config` with the given fields parsed from their command-line strings."""
    hints = typing.get_type_hints(type(config))
    changes = {}
    for name, text in texts.items():
        try:
            changes[name] = _parse(hints[name], text)
        except (ValueError, json.JSONDecodeError) as e:
            raise CommandError(f"{flag} {name}: {e}") from None
    try:
        return dataclasses.replace(config, **changes)
    except (ValueError, TypeError) as e:
        raise CommandError(f"{flag}: {e}") from None


def add_overrides(parser: argparse.ArgumentParser, cls: type) -> None:
    """One `--field VALUE` flag per dataclass field."""
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(f"{cls.__name__} overrides (default: the preset's value)")
    for f in fields(cls):
        if f.init:
            metavar = getattr(hints[f.name], "__name__", "JSON").upper()
            group.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, default=None, metavar=metavar,
                               help=(TRAIN_HELP.get(f.name, "") if cls is TrainConfig else ""))


def apply_overrides(config: Any, args: argparse.Namespace) -> Any:
    """A copy of `config` with every flag given on the command line applied (and re-validated)."""
    texts = {f.name: getattr(args, f.name) for f in fields(config)
             if f.init and getattr(args, f.name, None) is not None}
    return _with_changes(config, texts, "override")


def apply_sets(config: Any, items: list[str] | None, flag: str = "--model-set") -> Any:
    """A copy of `config` with `FIELD=VALUE` overrides applied (values parsed by the field's type)."""
    known = {f.name for f in fields(config) if f.init}
    texts = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in known:
            raise CommandError(f"{flag} {item!r}: expected FIELD=VALUE with FIELD one of {', '.join(sorted(known))}")
        texts[key] = text
    return _with_changes(config, texts, flag) if texts else config
