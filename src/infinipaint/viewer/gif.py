"""Writing frame sequences as GIFs (sessions, rollouts, dataset previews), one frame at a time.

    write_gif("out/session.gif", frames, fps=12.5)     # frames: (T, H, W, 3) uint8, or any iterable of them
    write_gif(path, strips, labels=("truth", "model", "difference"))   # a caption over each panel
    with GifWriter("out/session.gif", labels=...) as gif:   # a stream: memory of two frames, however long
        for frame in frames:
            gif.add(frame)

Frames are encoded and written as they come (PIL keeps every frame of `save_all` in memory until
the end: 160 KB per captioned 672-px strip, gigabytes for a long session). Like PIL's own writer,
each frame after the first is stored as the rectangle that changed since the previous one, with
its own adaptive palette, and a frame identical to the previous one only lengthens its duration.
The file is written to `NAME.tmp`, fsynced and renamed (`infinipaint.files.atomic_file`): a reader
sees the old GIF or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import IO, Iterable, Sequence

import numpy as np

from infinipaint.files import atomic_file

LABEL_HEIGHT = 14  # px of the caption band over the panels
GIF_FPS = 12.5  # 80 ms a frame: one frame per model step, as the pointer is sampled
GIF_SECONDS = 60.0  # the viewer's session.gif: the last minute of steps (750 frames); 0: all of them
MAX_DELAY_MS = 655_350  # a GIF frame's delay is 16 bits of 10 ms


class GifWriter:
    """A looping GIF written frame by frame: `add(frame)` encodes a uint8 (H, W, 3) frame (all of
    the same size) and writes the previous one; `close()` ends the file and renames it into place.
    `labels`: frames made of that many equal panels side by side get a caption band with one label
    over each."""

    def __init__(self, path: str | Path, fps: float = GIF_FPS, scale: int = 1, labels: Sequence[str] | None = None) -> None:
        self.path = Path(path)
        self.delay = round(1000 / fps)  # ms per frame
        self.scale = scale
        self.labels = tuple(labels) if labels else None
        self.frames = 0  # frames added
        self._file: IO[bytes] | None = None
        self._atomic: contextlib.AbstractContextManager | None = None
        self._band: np.ndarray | None = None
        self._last: np.ndarray | None = None  # the last frame added (as written: scaled, captioned)
        self._pending: tuple | None = None  # (palette image, offset, local palette?) not yet written
        self._pending_ms = 0
        self._repeat: tuple | None = None  # the last written frame, to extend a delay past 16 bits

    def __enter__(self) -> "GifWriter":
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is None:
            self.close()
        elif self._atomic is not None:  # a failed block leaves no file behind (nor the old one changed)
            self._atomic.__exit__(kind, value, tb)
            self._atomic = self._file = None

    def add(self, frame: np.ndarray) -> None:
        from PIL import Image

        rgb = self._compose(frame)
        if self._last is None:
            from PIL import GifImagePlugin

            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._atomic = atomic_file(self.path)
            self._file = self._atomic.__enter__()
            image = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE)
            header, _ = GifImagePlugin.getheader(image, None, {"loop": 0, "duration": self.delay})
            self._file.write(b"".join(header))
            self._pending, self._pending_ms = (image, (0, 0), False), self.delay
        else:
            if rgb.shape != self._last.shape:
                raise ValueError(f"{self.path}: frame {self.frames} is {rgb.shape[1]}x{rgb.shape[0]}, the GIF "
                                 f"{self._last.shape[1]}x{self._last.shape[0]}")
            changed = (rgb != self._last).any(axis=2)
            rows, cols = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
            if not len(rows):  # the same picture: the last frame stays up longer
                if self._pending_ms + self.delay > MAX_DELAY_MS:
                    self._flush()
                    self._pending, self._pending_ms = self._repeat, 0
                self._pending_ms += self.delay
            else:
                self._flush()
                y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
                crop = np.ascontiguousarray(rgb[y0:y1, x0:x1])
                image = Image.fromarray(crop).convert("P", palette=Image.Palette.ADAPTIVE)
                self._pending, self._pending_ms = (image, (int(x0), int(y0)), True), self.delay
        self._last = rgb
        self.frames += 1

    def close(self) -> Path:
        """Write the last frame and the trailer; the GIF appears at `path`. ValueError without frames."""
        if self._file is None:
            raise ValueError(f"{self.path}: no frames to write")
        self._flush()
        self._file.write(b";")  # trailer
        self._atomic.__exit__(None, None, None)
        self._atomic = self._file = None
        return self.path

    # ------------------------------------------------------------------------------ internals
    def _compose(self, frame: np.ndarray) -> np.ndarray:
        """The frame as written: scaled (nearest), with the caption band on top."""
        rgb = np.ascontiguousarray(frame, dtype=np.uint8)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"{self.path}: frames must be uint8 (H, W, 3), got shape {rgb.shape}")
        if self.scale != 1:
            rgb = rgb.repeat(self.scale, axis=0).repeat(self.scale, axis=1)
        if self.labels:
            if self._band is None or self._band.shape[1] != rgb.shape[1]:
                self._band = caption_band(rgb.shape[1], self.labels)
            rgb = np.concatenate([self._band, rgb], axis=0)
        return rgb

    def _flush(self) -> None:
        """Write the pending frame with its (possibly lengthened) duration."""
        if self._pending is None:
            return
        from PIL import GifImagePlugin

        image, offset, local = self._pending
        for chunk in GifImagePlugin.getdata(image, offset, duration=self._pending_ms, include_color_table=local):
            self._file.write(chunk)
        self._repeat = (image, offset, True)  # drawing it again changes nothing: for delays over 16 bits
        self._pending = None


def caption_band(width: int, labels: Sequence[str]) -> np.ndarray:
    """A white band (LABEL_HEIGHT, width, 3) with one label centred over each of len(labels) panels."""
    from PIL import Image, ImageDraw

    band = Image.new("RGB", (width, LABEL_HEIGHT), (255, 255, 255))
    draw, panel = ImageDraw.Draw(band), width / len(labels)
    for i, text in enumerate(labels):
        draw.text((round(panel * (i + 0.5)), LABEL_HEIGHT // 2), text, fill=(0, 0, 0), anchor="mm")
    return np.asarray(band)


def write_gif(path: str | Path, frames: Iterable[np.ndarray], fps: float = GIF_FPS, scale: int = 1,
              labels: Sequence[str] | None = None) -> Path:
    """Write uint8 RGB frames as a looping GIF (80 ms per frame at the default 12.5 fps), streaming
    them through `GifWriter`. `labels`: a caption over each of that many equal panels."""
    with GifWriter(path, fps=fps, scale=scale, labels=labels) as gif:
        for f in frames:
            gif.add(f)
        if not gif.frames:
            raise ValueError("no frames to write")
    return Path(path)
