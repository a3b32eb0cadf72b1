"""Writing frame sequences as GIFs (sessions, rollouts, dataset previews).

    write_gif("out/session.gif", frames, fps=12.5)     # frames: (T, H, W, 3) uint8
    write_gif(path, strips, labels=("truth", "model", "difference"))   # a caption over each panel
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np


LABEL_HEIGHT = 14  # px of the caption band over the panels


def write_gif(path: str | Path, frames: Iterable[np.ndarray], fps: float = 12.5, scale: int = 1,
              labels: Sequence[str] | None = None) -> Path:
    """Write uint8 RGB frames as a looping GIF (80 ms per frame at the default 12.5 fps). `labels`:
    frames made of that many equal panels side by side get a caption band with one label over each."""
    from PIL import Image, ImageDraw

    images = []
    for f in frames:
        img = Image.fromarray(np.ascontiguousarray(f, dtype=np.uint8))
        if scale != 1:
            img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
        if labels:
            framed = Image.new("RGB", (img.width, img.height + LABEL_HEIGHT), (255, 255, 255))
            framed.paste(img, (0, LABEL_HEIGHT))
            draw, panel = ImageDraw.Draw(framed), img.width / len(labels)
            for i, text in enumerate(labels):
                draw.text((round(panel * (i + 0.5)), LABEL_HEIGHT // 2), text, fill=(0, 0, 0), anchor="mm")
            img = framed
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
