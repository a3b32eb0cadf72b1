"""Files that appear complete or not at all.

    from infinipaint.files import atomic_file, atomic_write
    atomic_write("weights/cpu/vae.json", data)          # bytes
    with atomic_file("out/dream/session.gif") as f:     # a binary file object, written as it goes
        f.write(header)

The bytes go to `NAME.tmp` in the same folder (so the rename stays on one file system), are
fsynced, and the temp file is renamed over `NAME` when the block ends: a reader sees the old file
or the new one, never half of one. A block that fails removes the temp file and leaves `NAME` as
it was. Model weights, evaluation outputs and the viewer's saves are written this way.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO, Iterator


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[IO[bytes]]:
    """A binary file that appears at `path` only complete: written to `path.tmp`, fsynced, renamed
    over `path` when the block ends; removed (and `path` untouched) if the block fails."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` through `atomic_file`; returns the path."""
    with atomic_file(path) as f:
        f.write(data)
    return Path(path)
