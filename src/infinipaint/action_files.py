"""Action files: `{"actions": [[x, y, down], ...]}`, read back with bounds (no torch here).

    from infinipaint.action_files import read_actions
    samples = read_actions("session.json")     # [(x, y, down), ...], validated

Raw pointer samples in 224-pixel coordinates, as `infinipaint dream` saves them and `rollout`
replays them; every value a whole JSON number (`1` or `1.0`; not `1.5`, `true`, NaN or a string).
A file may hold up to `MAX_SAMPLES` entries (5.6 hours at 80 ms) in `MAX_BYTES`: a longer or
bigger one is refused before it is parsed, so a hostile file cannot take the memory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from infinipaint.errors import DataError
from infinipaint.minipaint import validate_action

MAX_SAMPLES = 250_000  # entries of an action file: 5.6 hours of 80-ms samples (a 2-hour session has 90,000)
MAX_BYTES = 64 * MAX_SAMPLES + 2**20  # room for 64 bytes an entry (JSON indented 4) and a header


def read_actions(path: str | Path) -> list[tuple[int, int, int]]:
    """Parse and validate an action file; DataError naming the file and the bad entry's index.
    At most MAX_BYTES are read and MAX_SAMPLES entries parsed: a bigger file is refused first."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)  # a bounded read: /dev/zero or a FIFO cannot fill the memory
    except OSError as e:
        raise DataError(f"{path}: cannot read action file ({e.strerror})") from None
    if len(data) > MAX_BYTES:
        raise DataError(f"{path}: more than {MAX_BYTES / 2**20:.0f} MiB, too big for an action file, which holds at "
                        f"most {MAX_BYTES / 2**20:.0f} MiB and {_limit()}: split it")
    if data.count(b"[") > MAX_SAMPLES + 1:  # every entry opens a bracket: count them before parsing
        raise DataError(f"{path}: more than {MAX_SAMPLES:,} entries, too long for an action file, which holds at "
                        f"most {_limit()}: split it")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:  # JSONDecodeError, and integers of over 4,300 digits
        raise DataError(f"{path}: not valid JSON ({e})") from None
    except RecursionError:
        raise DataError(f"{path}: not an action file (JSON nested too deeply)") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("actions"), list):
        raise DataError(f'{path}: expected an object {{"actions": [[x, y, down], ...]}}')
    if not doc["actions"]:
        raise DataError(f"{path}: the action list is empty")
    out = []
    for i, entry in enumerate(doc["actions"]):
        if not isinstance(entry, list):
            raise DataError(f"{path}: entry {i}: expected [x, y, down], got {_show(entry)}")
        # validate_action's rules (whole numbers, 1.0 as 1), but a JSON true, null or string is refused
        bad = [v for v in entry if isinstance(v, bool) or not isinstance(v, (int, float))] if len(entry) == 3 else []
        try:
            if bad:
                raise ValueError(f"values must be whole numbers, got {_show(bad[0])}")
            out.append(validate_action(entry))
        except ValueError as e:
            raise DataError(f"{path}: entry {i} ({_show(entry)}): {e}") from None
    return out


def _limit() -> str:
    """The length limit of an action file, in words."""
    return f"{MAX_SAMPLES:,} samples ({MAX_SAMPLES * 0.08 / 3600:.1f} hours at 80 ms)"


def _show(value: Any, limit: int = 60) -> str:
    """A JSON value for an error message, cut to `limit` characters."""
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
