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


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000  # optimizer steps in the whole run
    batch_size: int = 16  # samples per step per process
    lr: float = 1e-3  # peak learning rate (AdamW)
    min_lr_ratio: float = 0.1  # cosine decay ends at lr * min_lr_ratio
    warmup: int = 100  # linear warm-up steps
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    grad_clip: float = 1.0  # global grad-norm clip (0 disables)
    precision: str = "bf16"  # "bf16" autocast or "fp32"
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    channels_last: bool = True  # NHWC memory format (fast bf16 convolutions on AMX and GPUs)
    num_workers: int = 0  # DataLoader worker processes (0: load in the training process)
    seed: int = 0  # seeds data order and every random draw, per step
    log_every: int = 10  # steps between metrics.jsonl/TensorBoard lines
    val_every: int = 500  # steps between validations (0: only at the end)
    val_batches: int = 8  # batches per validation
    ckpt_every: int = 250  # steps between training-state checkpoints
    time_limit: float = 0.0  # stop this process (with a checkpoint) after this many minutes (0: no limit)
    extra: dict[str, Any] = field(default_factory=dict)  # component-specific knobs (e.g. unroll)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be positive")
        if self.lr <= 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError("lr must be positive and min_lr_ratio in [0, 1]")
        if self.precision not in ("bf16", "fp32"):
            raise ValueError(f"precision must be 'bf16' or 'fp32', got {self.precision!r}")
        if min(self.warmup, self.num_workers, self.val_every, self.val_batches) < 0:
            raise ValueError("warmup, num_workers, val_every and val_batches must be >= 0")
        if self.log_every < 1 or self.ckpt_every < 1:
            raise ValueError("log_every and ckpt_every must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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
        "cpu": TrainConfig(steps=20000, batch_size=16, lr=1e-3, warmup=300, val_every=1000,
                           ckpt_every=250),
        "paper": TrainConfig(steps=100000, batch_size=64, lr=2e-4, warmup=1000, val_every=2000,
                             ckpt_every=1000, num_workers=6),
    },
}


# ------------------------------------------------------------------ dataclass <-> command line
def _parse(kind: Any, text: str) -> Any:
    origin = typing.get_origin(kind)
    if kind is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected a boolean, got {text!r}")
    if kind in (int, float, str):
        return kind(text)
    if origin in (tuple, list, dict) or kind in (dict,):
        return json.loads(text)
    return json.loads(text)


def add_overrides(parser: argparse.ArgumentParser, cls: type, prefix: str = "") -> None:
    """One `--[prefix]field VALUE` flag per dataclass field, help taken from the field comment."""
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(f"{cls.__name__} overrides (default: the preset's value)")
    for f in fields(cls):
        if not f.init:
            continue
        flag = f"--{prefix}{f.name.replace('_', '-')}"
        group.add_argument(flag, dest=f"{prefix.replace('-', '_')}{f.name}", default=None, metavar=_metavar(hints[f.name]))


def _metavar(kind: Any) -> str:
    return getattr(kind, "__name__", "JSON").upper()


def apply_overrides(config: Any, args: argparse.Namespace, prefix: str = "") -> Any:
    """A copy of `config` with every flag given on the command line applied (and re-validated)."""
    hints = typing.get_type_hints(type(config))
    changes = {}
    for f in fields(config):
        value = getattr(args, f"{prefix.replace('-', '_')}{f.name}", None)
        if value is None or not f.init:
            continue
        try:
            changes[f.name] = _parse(hints[f.name], value)
        except (ValueError, json.JSONDecodeError) as e:
            raise CommandError(f"--{prefix}{f.name.replace('_', '-')}: {e}") from None
    try:
        return dataclasses.replace(config, **changes)
    except (ValueError, TypeError) as e:
        raise CommandError(str(e)) from None


def apply_sets(config: Any, items: list[str] | None, flag: str = "--model-set") -> Any:
    """A copy of `config` with `FIELD=VALUE` overrides applied (values parsed by the field's type)."""
    if not items:
        return config
    hints = typing.get_type_hints(type(config))
    known = {f.name for f in fields(config) if f.init}
    changes = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in known:
            raise CommandError(f"{flag} {item!r}: expected FIELD=VALUE with FIELD one of {', '.join(sorted(known))}")
        try:
            changes[key] = _parse(hints[key], text)
        except (ValueError, json.JSONDecodeError) as e:
            raise CommandError(f"{flag} {item!r}: {e}") from None
    try:
        return dataclasses.replace(config, **changes)
    except (ValueError, TypeError) as e:
        raise CommandError(f"{flag}: {e}") from None
