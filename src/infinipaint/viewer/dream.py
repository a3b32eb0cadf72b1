"""`infinipaint dream`: paint inside the world model, in a pygame window.

    infinipaint dream [--model weights/cpu] [--scale 3] [--no-truth] [--save out/dream]
    infinipaint dream --replay examples/demo_actions.json             # the file drives the window
    infinipaint dream --replay examples/demo_actions.json --headless --save docs/dream [--save-frames]
    infinipaint dream --replay FILE.json --headless --realtime --save DIR   # time it as a window runs

    from infinipaint.viewer.dream import Dream
    dream = Dream(world_model, replay=samples, realtime=False)
    dream.run()                        # until the replay is done (or the window closes)
    dream.save("out/dream")            # screenshot.png, session.gif, actions.json

The model's frame is on the left, scaled up. The pointer is sampled every 80 ms (the same
`PointerWindow` as `infinipaint play`) and fed through `ActionStream` (dead zone, 12-px sub-steps,
an idle step at the end of a stroke). The steps go to an inference thread through a bounded queue
(`viewer.inference`); the window shows only complete frames decoded from the rolling latent and
never waits for the model. With `--replay FILE.json` the samples come from an action file, one
per 80-ms tick (headless: as fast as the model goes, no sleeping); when the file ends the mouse
takes over.

Keys (the bottom line of the window repeats them):
    r        reset: a fresh Minipaint frame for both the model and the truth; starts a new session
             (and a replay over)
    space/p  pause: stop sampling the pointer (queued steps still finish)
    t        toggle the truth panels: real Minipaint driven by the same steps, |difference|, SSIM
    h        toggle the action-trajectory heatmap (last 24 steps; red = button down, blue = up)
    d        toggle the latent-delta map: mean |z_t+1 - z_t| over channels, 56x56, per-frame scale
    b        toggle the bars of per-block activation RMS of the dynamics network
    s        save the session since the last reset to --save DIR: screenshot.png, session.gif
             (model | truth | difference, one frame per step), actions.json (the raw pointer
             samples fed to ActionStream; `infinipaint rollout --actions DIR/actions.json
             --threads 1` replays them to the same frames, bit for bit: the viewer's inference
             thread runs 1 torch thread, and bf16 kernels may round differently with another count);
             --save-frames adds frames.npz (pred, truth, steps) like `rollout --save-frames`. The
             GIF is written on the UI thread: a long session pauses the window for a few seconds.
    q/Esc    quit

When the model falls behind. Each sample's steps are queued whole or not at all; the queue holds
`--queue` steps (64). The status line shows the backlog ("behind: N steps, ~T ms") whenever the
model has not caught up. Mouse samples that would overflow the queue are dropped, counted on
screen, and left out of actions.json (so the saved file still replays to exactly what was shown);
replayed samples are never dropped: the replay waits for room. When the window loop itself stalls
for whole 80-ms intervals (a busy machine), no sample can be taken in them: they are counted as
missed, on screen and in actions.json (`missed_samples`). A pointer outside the model's frame
with the button up is not sampled (shown as "pointer outside"); a drag that leaves the frame keeps
painting along its edge. The window can be resized: the picture is scaled to fit, the pointer
mapped back through the same transform.
"""

from __future__ import annotations

import json
import time
import zlib
from collections import deque
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from infinipaint.actions import ActionStream
from infinipaint.models.encoding import encode_action
from infinipaint.minipaint import SCREEN, Minipaint

from .inference import QUEUE, THREADS, InferenceWorker, Result
from .window import PointerWindow, pygame, to_surface

Sample = tuple[int, int, int]

SSIM_EVERY = 0.25  # s between SSIM updates on screen (the caption names the step it belongs to)
TRAIL = 24  # steps shown in the trajectory heatmap
TRAIL_DECAY = 0.88  # weight of a step one older
BOTTOM = 104  # px of status text and norm bars under the frames
MIN_QUEUE = 32  # one sample yields at most 29 steps (a 316-px jump at 12 px, then an idle step)
HELP = "r reset   space pause   t truth   h trajectory   d delta   b norms   s save   q quit"
PANELS = ("truth", "trajectory", "delta", "norms")
KEYS = {"t": "truth", "h": "trajectory", "d": "delta", "b": "norms"}
BG, PANEL_BG, TEXT, DIM, WARN, BAD = (24, 24, 28), (44, 44, 50), (230, 230, 230), (150, 150, 160), (255, 180, 60), (255, 90, 80)
# A perceptually ordered dark-to-bright colour map (anchors close to matplotlib's "inferno").
CMAP_ANCHORS = np.array([(0, 0, 4), (66, 10, 104), (147, 38, 103), (221, 81, 58), (252, 165, 10), (252, 255, 164)], np.float32)


def colormap(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (H, W) -> uint8 (H, W, 3)."""
    v = np.clip(values, 0.0, 1.0) * (len(CMAP_ANCHORS) - 1)
    i = np.minimum(v.astype(np.int32), len(CMAP_ANCHORS) - 2)
    f = (v - i)[..., None]
    return (CMAP_ANCHORS[i] * (1 - f) + CMAP_ANCHORS[i + 1] * f).round().astype(np.uint8)


def trajectory_image(steps: Sequence[Sample], base: np.ndarray | None = None) -> np.ndarray:
    """The last steps' cursor heatmaps on the 56x56 latent grid, newest brightest: uint8 (56, 56, 3).

    Button down in red, up in blue, over the dimmed frame `base` (224, 224, 3) if given."""
    down = np.zeros((56, 56), np.float32)
    up = np.zeros((56, 56), np.float32)
    for age, (x, y, d) in enumerate(reversed(steps[-TRAIL:])):
        heat = encode_action(x, y, d)[..., 0] * TRAIL_DECAY**age
        np.maximum(down if d else up, heat, out=down if d else up)
    img = np.zeros((56, 56, 3), np.float32)
    if base is not None:
        img += base.reshape(56, 4, 56, 4, 3).mean(axis=(1, 3)) * 0.3
    img += down[..., None] * np.float32([255, 60, 40]) + up[..., None] * np.float32([50, 150, 255])
    return np.clip(img, 0, 255).astype(np.uint8)


def difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """White where equal, darker where the frames differ: 255 - |a - b| (uint8 (H, W, 3))."""
    return (255 - np.abs(a.astype(np.int16) - b.astype(np.int16))).astype(np.uint8)


class Dream:
    def __init__(self, model: Any, scale: int = 3, truth: bool = True, queue: int = QUEUE, threads: int = THREADS,
                 replay: Sequence[Sample] | None = None, realtime: bool = True, save_dir: str | Path = "out/dream",
                 save_frames: bool = False, mouse: bool = True, model_dir: str | Path | None = None,
                 title: str = "Infinipaint dream") -> None:
        if queue < MIN_QUEUE:
            raise ValueError(f"the queue must hold at least {MIN_QUEUE} steps (one sample's worth), got {queue}")
        self.model = model
        self.m = SCREEN * scale  # side of the model's frame
        self.p = SCREEN * scale // 2  # side of a panel
        self.size = (self.m + 2 * self.p, self.m + BOTTOM)
        self.window = PointerWindow(title, size=self.size, frame_rect=(0, 0, self.m), realtime=realtime)
        self.font = pygame.font.Font(None, 20 if scale >= 2 else 16)
        self.worker = InferenceWorker(model, bound=queue, threads=threads)
        self.minipaint = Minipaint()
        self.stream = ActionStream()
        self.show = {name: True for name in PANELS}
        self.show["truth"] = truth
        self.replay = list(replay or [])
        self.realtime = realtime
        self.mouse = mouse  # False: pointer samples are ignored (headless: the dummy driver's pointer is not a user)
        self.save_dir = Path(save_dir)
        self.save_frames = save_frames
        self.model_dir = model_dir  # named in actions.json's replay command
        self.paused = False
        self.message = ""  # one-off note on the status line (saved, errors)
        self.latencies: list[float] = []  # ms of every step since start (for the summary)
        self._started = time.perf_counter()
        self._ended: float | None = None
        self.reset()

    # ------------------------------------------------------------------------------ session
    def reset(self) -> None:
        """A fresh Minipaint frame for both sides; a new session (samples, steps, frames) begins."""
        first = self.minipaint.reset()
        self.stream.reset()
        self.worker.reset(first)
        self.replay_pos = 0
        self.samples: list[Sample] = []  # raw samples fed to the ActionStream (-> actions.json)
        self.steps: list[Sample] = []  # steps delivered by the model, in order
        self._expected: deque[Sample] = deque()  # steps submitted, not yet delivered
        self.frames: list[bytes] = []  # model frames (zlib), frame 0 is the reset frame
        self.dropped = 0
        self._missed_at_reset = self.window.missed  # samples the stalled window loop could not take, from here
        self.held = False  # a replay sample is waiting for room in the queue
        self.shown: Result | None = None
        self.truth = first
        self.ssim: tuple[float, int] | None = None  # (SSIM, step it belongs to)
        self._ssim_at = 0.0
        self._surfaces: dict[str, Any] = {}

    def feed(self, sample: Sample, block: bool = False) -> bool:
        """Push one raw sample through the ActionStream into the queue; False if it did not fit
        (the stream is left as if the sample never came)."""
        last = self.stream.last
        steps = self.stream.push(*sample)
        if steps and not self.worker.submit(steps, block=block):
            self.stream.last = last
            return False
        self.samples.append(tuple(int(v) for v in sample))
        self._expected.extend(steps)
        return True

    def consume(self) -> bool:
        """Take the finished results (in order); step the truth with the same steps. True if any."""
        results = self.worker.poll()
        for r in results:
            if r.action is not None:
                want = self._expected.popleft() if self._expected else None
                if r.action != want or r.index != len(self.steps) + 1:
                    raise RuntimeError(f"inference delivered step {r.index} {r.action}, expected "
                                       f"{len(self.steps) + 1} {want}")
                self.steps.append(r.action)
                self.truth = self.minipaint.step(r.action)
                self.latencies.append(r.ms)
            self.frames.append(r.packed)
            self.shown = r
        if results:
            self._surfaces.clear()
        return bool(results)

    def frame(self, i: int) -> np.ndarray:
        """The model's frame i of the session (0: the reset frame), uint8 (224, 224, 3)."""
        return np.frombuffer(zlib.decompress(self.frames[i]), np.uint8).reshape(SCREEN, SCREEN, 3)

    def truth_frames(self) -> np.ndarray:
        """Minipaint's frames of the session (0: the reset frame), regenerated from the steps: (T + 1, 224, 224, 3)."""
        app = Minipaint()
        return np.stack([app.reset()] + [app.step(s) for s in self.steps])

    # --------------------------------------------------------------------------------- loop
    def tick(self) -> None:
        """One display frame: input, feeding, results, drawing."""
        sample = self.window.tick()
        for key in self.window.keys:
            self.on_key(key)
        if not self.paused and self.window.sampled:
            if self.replay_pos < len(self.replay):
                # Replayed samples are never dropped: headless waits for room, a window retries next tick.
                self.held = not self.feed(self.replay[self.replay_pos], block=not self.realtime)
                if not self.held:
                    self.replay_pos += 1
            elif sample is not None and self.mouse and not self.feed(sample):
                self.dropped += 1
        if not self.consume() and not self.realtime:
            self.worker.wait(0.05)
            self.consume()
        self.draw()
        self.window.present()

    def replay_done(self) -> bool:
        return self.replay_pos >= len(self.replay) and self.worker.idle()

    def run(self, max_ticks: int = 0) -> None:
        """Until the window closes (without a mouse: until the replay is done and every step shown)."""
        while self.window.running:
            self.tick()
            if not self.mouse and self.replay_done():  # nobody to take over from the replay
                break
            if max_ticks and self.window.ticks >= max_ticks:
                break
        self._ended = time.perf_counter()

    def on_key(self, key: str) -> None:
        if key == "r":
            self.reset()
            self.message = "reset"
        elif key in ("space", "p"):
            self.paused = not self.paused
        elif key in KEYS:
            self.toggle(KEYS[key])
        elif key == "s":
            self.save(self.save_dir)

    def toggle(self, panel: str) -> None:
        self.show[panel] = not self.show[panel]
        self._surfaces.clear()

    def close(self) -> None:
        self.worker.close()
        self.window.close()

    # -------------------------------------------------------------------------------- save
    def save(self, directory: str | Path) -> Path:
        """screenshot.png (the window as drawn), session.gif, actions.json (and frames.npz)."""
        from .gif import write_gif

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.draw(final=True)
        pygame.image.save(self.window.canvas, str(d / "screenshot.png"))
        n = len(self.frames)
        truths = self.truth_frames()[:n]
        gif = []
        for i in range(n):
            model = self.frame(i)
            gif.append(np.concatenate([model, truths[i], difference(model, truths[i])], axis=1)
                       if self.show["truth"] else model)
        write_gif(d / "session.gif", gif, labels=("model", "Minipaint", "difference") if self.show["truth"] else None)
        bf16 = bool(getattr(self.model, "bf16", True))
        replay = (f"infinipaint rollout --model {self.model_dir or 'DIR'} --actions {d / 'actions.json'} "
                  f"--threads {self.worker.threads}" + ("" if bf16 else " --fp32"))
        doc = {"actions": [list(s) for s in self.samples], "steps": len(self.steps), "sample_ms": self.window.sample_ms,
               "dropped_samples": self.dropped, "missed_samples": self.missed,
               "note": "raw pointer samples of an `infinipaint dream` session, fed to ActionStream as they are",
               "replay": replay, "threads": self.worker.threads, "bf16": bf16}
        tmp = d / "actions.json.tmp"
        tmp.write_text(json.dumps(doc) + "\n")
        tmp.replace(d / "actions.json")
        if self.save_frames and n > 1:
            np.savez_compressed(d / "frames.npz", pred=np.stack([self.frame(i) for i in range(1, n)]), truth=truths[1:],
                                steps=np.asarray(self.steps[: n - 1], dtype=np.int16))
        self.message = f"saved {len(self.samples)} samples, {len(self.steps)} steps to {d}"
        return d

    @property
    def missed(self) -> int:
        """Sample intervals of this session in which the stalled window loop could take no sample."""
        return self.window.missed - self._missed_at_reset

    def summary(self) -> dict[str, float]:
        lat = np.asarray(self.latencies or [np.nan])
        wall = (self._ended or time.perf_counter()) - self._started
        return {"steps": len(self.steps), "samples": len(self.samples), "dropped": self.dropped, "missed": self.missed,
                "ticks": self.window.ticks, "ui_fps": self.window.ticks / wall if wall else 0.0,
                "step_ms_median": float(np.median(lat)), "step_ms_p90": float(np.percentile(lat, 90)),
                "step_ms_mean": float(np.mean(lat)), "wall_s": wall}

    # -------------------------------------------------------------------------------- draw
    def draw(self, final: bool = False) -> None:
        c = self.window.canvas
        c.fill(BG)
        m, p = self.m, self.p
        if self.shown is not None:
            c.blit(self._surface("model", lambda: self.shown.frame, m), (0, 0))
        self._caption("model" + (f"  step {self.shown.index}" if self.shown else "  (starting)"), (0, 0))
        if self.show["truth"] and self.shown is not None:
            c.blit(self._surface("truth", lambda: self.truth, p), (m, 0))
            c.blit(self._surface("diff", lambda: difference(self.truth, self.shown.frame), p), (m + p, 0))
            self._caption("truth (Minipaint)", (m, 0))
            value, step = self._ssim(final)
            self._caption(f"difference, SSIM {value:.4f}" + (f" (step {step})" if step != self.shown.index else ""),
                          (m + p, 0))
        else:
            self._off("truth + difference: press t", (m, 0), (2 * p, p))
        if self.show["trajectory"]:
            c.blit(self._surface("trajectory", lambda: trajectory_image(
                self.steps[-TRAIL:], self.shown.frame if self.shown else None), p), (m, p))
            self._caption("trajectory: red down, blue up", (m, p))
        else:
            self._off("trajectory: press h", (m, p), (p, p))
        if self.show["delta"] and self.shown is not None:
            top = float(self.shown.delta.max())
            c.blit(self._surface("delta", lambda: colormap(self.shown.delta / max(top, 1e-6)), p), (m + p, p))
            self._caption(f"latent |dz|, max {top:.3g}", (m + p, p))
        else:
            self._off("latent delta: press d", (m + p, p), (p, p))
        if self.show["norms"]:
            self._norms((m, m, 2 * p, BOTTOM - 22))
        else:
            self._off("block norms: press b", (m, m), (2 * p, BOTTOM - 22))
        self._status((6, m + 4))
        c.blit(self.font.render(HELP, True, DIM), (6, self.size[1] - 18))

    def _surface(self, key: str, image, side: int):
        """Cached scaled surface of an image; rebuilt after new results or a toggle."""
        if key not in self._surfaces:
            self._surfaces[key] = pygame.transform.scale(to_surface(image()), (side, side))
        return self._surfaces[key]

    def _ssim(self, fresh: bool = False) -> tuple[float, int]:
        """SSIM of the shown pair and its step; at most every SSIM_EVERY s (about 15 ms of CPU each)."""
        stale = self.ssim is None or self.ssim[1] != self.shown.index
        if stale and (fresh or self.ssim is None or time.perf_counter() - self._ssim_at >= SSIM_EVERY):
            from infinipaint.metrics import frame_metrics

            self.ssim = float(frame_metrics(self.truth[None], self.shown.frame[None])["ssim"][0]), self.shown.index
            self._ssim_at = time.perf_counter()
        return self.ssim

    def _caption(self, text: str, pos: tuple[int, int]) -> None:
        img = self.font.render(text, True, TEXT)
        bg = pygame.Surface((img.get_width() + 8, img.get_height() + 4), pygame.SRCALPHA)
        bg.fill((0, 0, 0, 150))
        self.window.canvas.blit(bg, pos)
        self.window.canvas.blit(img, (pos[0] + 4, pos[1] + 2))

    def _off(self, text: str, pos: tuple[int, int], size: tuple[int, int]) -> None:
        pygame.draw.rect(self.window.canvas, PANEL_BG, (*pos, *size))
        pygame.draw.rect(self.window.canvas, BG, (*pos, *size), 1)
        img = self.font.render(text, True, DIM)
        self.window.canvas.blit(img, (pos[0] + (size[0] - img.get_width()) // 2, pos[1] + (size[1] - img.get_height()) // 2))

    def _norms(self, rect: tuple[int, int, int, int]) -> None:
        x0, y0, w, h = rect
        c = self.window.canvas
        pygame.draw.rect(c, PANEL_BG, rect)
        norms = self.shown.norms if self.shown is not None else []
        c.blit(self.font.render("block activation RMS (dynamics)", True, TEXT), (x0 + 6, y0 + 4))
        if not norms:
            c.blit(self.font.render("(after the first step)", True, DIM), (x0 + 6, y0 + 24))
            return
        top = max(max(norms), 1e-6)
        slot = (w - 12) // len(norms)
        for i, v in enumerate(norms):
            bar = int((h - 44) * v / top)
            bx = x0 + 6 + i * slot
            pygame.draw.rect(c, (90, 160, 255), (bx, y0 + h - 20 - bar, max(slot - 8, 2), bar))
            c.blit(self.font.render(f"{i}: {v:.3g}", True, TEXT), (bx, y0 + h - 18))

    def _status(self, pos: tuple[int, int]) -> None:
        lat = self.latencies[-20:]
        backlog = self.worker.backlog
        line1 = (f"step {len(self.steps)}   latency {lat[-1]:.1f} ms (mean {np.mean(lat):.1f})" if lat else
                 f"step {len(self.steps)}") + f"   UI {self.window.fps_measured:.0f} fps"
        parts: list[tuple[str, tuple[int, int, int]]] = [(line1, TEXT)]
        if backlog:
            ms = backlog * (np.mean(lat) if lat else 0.0)
            parts.append((f"BEHIND: {backlog} steps queued (~{ms:.0f} ms) of {self.worker.bound}",
                          BAD if backlog > self.worker.bound // 2 else WARN))
        else:
            parts.append((f"up to date   queue 0/{self.worker.bound}", DIM))
        notes: list[tuple[str, tuple[int, int, int]]] = []
        if self.dropped:
            notes.append((f"dropped {self.dropped} samples (queue full)", BAD))
        if self.missed:
            notes.append((f"missed {self.missed} samples (the window stalled)", BAD))
        if self.paused:
            notes.append(("PAUSED", WARN))
        if self.replay:
            notes.append((f"replay {self.replay_pos}/{len(self.replay)}" + (" (waiting for the queue)" if self.held else ""), TEXT))
        if self.window.outside and not self.paused and self.replay_pos >= len(self.replay):
            notes.append(("pointer outside the frame", DIM))
        y = pos[1]
        for text, color in parts:
            self.window.canvas.blit(self.font.render(text, True, color), (pos[0], y))
            y += 20
        x = pos[0]
        for text, color in notes:
            img = self.font.render(text, True, color)
            self.window.canvas.blit(img, (x, y))
            x += img.get_width() + 16
        if self.message:
            self.window.canvas.blit(self.font.render(self.message, True, DIM), (pos[0], y + 20))
