"""Writing frame sequences as GIFs (sessions, rollouts, dataset previews).

    write_gif("out/session.gif", frames, fps=12.5)     # frames: (T, H, W, 3) uint8
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np


def write_gif(path: str | Path, frames: Iterable[np.ndarray], fps: float = 12.5, scale: int = 1) -> Path:
    """Write uint8 RGB frames as a looping GIF (80 ms per frame at the default 12.5 fps)."""
    from PIL import Image

    images = []
    for f in frames:
        img = Image.fromarray(np.ascontiguousarray(f, dtype=np.uint8))
        if scale != 1:
            img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
        images.append(img)
    if not images:
        raise ValueError("no frames to write")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                   duration=round(1000 / fps), loop=0, optimize=False)
    tmp.replace(path)
    return path
