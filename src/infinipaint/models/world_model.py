"""WorldModel: the VAE and the LatentCNN run as a paint program on a rolling latent.

    from infinipaint.models.world_model import WorldModel
    wm = WorldModel.load("weights/cpu")
    frame = wm.reset(first_frame)          # encode once; returns the decoded frame
    frame = wm.step((100, 120, 1))         # z <- f(z, a_prev, a); decode only to show
    frames = wm.rollout(first_frames, actions)   # batched: (B, 224, 224, 3), (B, T, 3) -> (B, T, 224, 224, 3)
    wm.latent, wm.last_delta, wm.block_norms     # diagnostics of the last step

Frames are uint8 (224, 224, 3) numpy arrays; an action is one pointer step `(x, y, down)` in screen
pixels (a tuple, a list or an integer numpy array of 3 ints). The previous action of the first
step is the dynamics network's `reset_action`, the one the training data recorded before every
episode's first step. Device-agnostic: `WorldModel.load(dir, device="cuda")`. Nothing here knows
which app the frames come from.

Bad input (another type, shape or dtype, NaN, an integer out of range, a rollout whose frames
would not fit in the memory available) raises ValueError before any work, and leaves the model's
state as it was: the next good call goes on as if the bad one never came.

One step reads as a straight line: the dynamics network predicts the next latent from the latent
and the two actions (and, for a network that reads it, where the drag under way began: `origin`,
tracked from the actions), on a window of `window` cells centred between the two cursors (the size it was
trained on, `train_crop`; 0: the whole latent), its global context reading the whole latent; cells
outside the window keep their values.

`step` decodes only what can have changed: with a local decoder (`VAE.decode_radius`), the cells
around those whose latent changed are decoded again, with their whole receptive field, and pasted
into the last frame; a step that changes nothing (a hover, with an FSQ latent) decodes nothing.
The frames are the same as full decoding (tested), so `rollout` keeps decoding whole frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from infinipaint.errors import CheckpointError
from infinipaint.precision import resolve_bf16

from . import vae as vae_files
from .checkpoint import load_state_strict, load_weights, read_info
from .dynamics import DynamicsConfig, LatentCNN
from .encoding import drag_origins, next_origins
from .stepping import check_action, check_step, redraw_box
from .vae import VAE

DYNAMICS = "dynamics"
SCREEN = vae_files.FRAME  # frame size in pixels: actions are 0 <= x, y < SCREEN


def load_dynamics(directory: str | Path, map_location: str | torch.device = "cpu") -> LatentCNN:
    info = read_info(directory, DYNAMICS)
    try:
        config = DynamicsConfig.from_dict(info["config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{Path(directory) / 'dynamics.json'}: bad dynamics config ({e})") from None
    state, _ = load_weights(directory, DYNAMICS)
    model = LatentCNN(config)
    load_state_strict(model, state, source=str(Path(directory) / "dynamics.safetensors"))
    return model.to(map_location).eval()


def window_corner(prev: torch.Tensor, action: torch.Tensor, grid: int, window: int) -> torch.Tensor:
    """(B, 2) latent (x0, y0) of the `window` x `window` cells a step runs on: centred between the
    two cursors (prev, action: (B, 3) screen-pixel steps), kept inside the `grid` x `grid` latent."""
    centre = ((prev[:, :2] + action[:, :2]).float() / 2 + 0.5) / (SCREEN / grid) - 0.5  # latent (x, y)
    return (centre - window / 2).round().clamp(0, grid - window).long()


def _check_frames(frames: np.ndarray, ndim: int, empty: bool = False) -> np.ndarray:
    """`frames` if it is a uint8 numpy array (224, 224, 3) (ndim 3) or (B, 224, 224, 3) (ndim 4;
    B >= 1 unless `empty`)."""
    want = f"uint8 {'(B, ' if ndim == 4 else '('}{SCREEN}, {SCREEN}, 3)"
    if not isinstance(frames, np.ndarray):
        raise ValueError(f"frames must be a numpy array {want}, got {type(frames).__name__}")
    if (frames.dtype != np.uint8 or frames.ndim != ndim or frames.shape[-3:] != (SCREEN, SCREEN, 3)
            or not (frames.size or empty)):
        raise ValueError(f"frames must be {want}, got {frames.dtype} {frames.shape}")
    return frames


def _check_step(action: object) -> tuple[int, int, int]:
    """One step `(x, y, down)`: a tuple, list or integer numpy array of 3 ints (`stepping.check_step`)."""
    return check_step(action, SCREEN)


CGROUP = Path("/sys/fs/cgroup")  # the cgroup v2 hierarchy (Linux)


def _available_bytes() -> int | None:
    """Memory this process can still take, or None where unknown: the least of the system's
    (Linux MemAvailable) and, under cgroup v2 limits, of its cgroup's and every ancestor's."""
    found = [b for b in (_meminfo_available(), _cgroup_available()) if b is not None]
    return min(found) if found else None


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_available() -> int | None:
    """The least `memory.max` - (`memory.current` - inactive file cache, which the kernel reclaims
    first) over this process's cgroup v2 and its ancestors; None where none sets a limit."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
        own = next((line[3:] for line in lines if line.startswith("0::")), "/")
    except OSError:
        own = "/"
    folder, least = CGROUP / own.strip().lstrip("/"), None
    while True:
        try:
            limit = (folder / "memory.max").read_text().strip()
            if limit != "max":
                used = int((folder / "memory.current").read_text())
                stat = dict(line.split() for line in (folder / "memory.stat").read_text().splitlines()
                            if line.startswith("inactive_file "))
                room = int(limit) - used + int(stat.get("inactive_file", 0))
                least = room if least is None else min(least, room)
        except (OSError, ValueError):
            pass
        if folder == CGROUP or CGROUP not in folder.parents:
            return None if least is None else max(least, 0)
        folder = folder.parent


def _as_actions(actions: np.ndarray | Sequence, ndim: int) -> np.ndarray:
    """`actions` as a numpy integer array (..., 3) with `ndim` dimensions (its values unchecked)."""
    if isinstance(actions, (str, bytes, dict, set)):
        raise ValueError(f"actions must be an integer array (..., 3), got {type(actions).__name__}")
    try:
        a = np.asarray(actions)
    except (ValueError, TypeError, OverflowError) as e:  # ragged nesting, unconvertible entries
        raise ValueError(f"actions must be an integer array (..., 3) (x, y, down): {e}") from None
    if a.shape[-1:] != (3,) or a.ndim != ndim:
        raise ValueError(f"actions must have {ndim} dimensions ending in 3 (x, y, down), got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"actions must be integers, got {a.dtype}")
    return a


def _check_action_values(a: np.ndarray) -> np.ndarray:
    """`a` (..., 3) if every step is on the screen with down 0 or 1."""
    if (a[..., :2] < 0).any() or (a[..., :2] >= SCREEN).any() or not np.isin(a[..., 2], (0, 1)).all():
        raise ValueError(f"actions must have 0 <= x, y < {SCREEN} and down in {{0, 1}}")
    return a


class WorldModel:
    def __init__(self, vae: VAE, dynamics: LatentCNN, device: str | torch.device = "cpu", bf16: bool | None = None,
                 window: int | None = None, keep_margin: float | None = None) -> None:
        if vae.config.latent_channels != dynamics.config.latent_channels:
            raise CheckpointError(f"VAE has {vae.config.latent_channels} latent channels, the dynamics network "
                                  f"{dynamics.config.latent_channels}: they do not belong together")
        fsq_levels = vae.config.fsq_levels if vae.config.latent == "fsq" else 0
        if dynamics.config.head == "levels" and dynamics.config.levels != fsq_levels:
            raise CheckpointError(f"the dynamics network classifies {dynamics.config.levels} FSQ levels, the VAE has "
                                  f"{'a continuous latent' if not fsq_levels else f'{fsq_levels} levels'}: "
                                  "they do not belong together")
        self.device = torch.device(device)
        self.vae = vae.to(self.device).eval()
        self.dynamics = dynamics.to(self.device).to(memory_format=torch.channels_last).eval()
        self.bf16 = resolve_bf16(bf16, self.device)  # None: where the device does bf16 natively
        # The dynamics network runs on a window of `window` cells around the cursors (a net trained on
        # crops: the size it was trained on), not the whole latent; see `advance`. 0: whole latent.
        self.window = dynamics.config.train_crop if window is None else int(window)
        if self.window < 0:
            raise ValueError(f"window must be 0 (whole latent) or a size in cells, got {self.window}")
        if keep_margin is not None:  # overrides the one saved with the dynamics (see `LatentCNN.step`)
            if not 0 <= keep_margin < 100:
                raise ValueError(f"keep_margin must be in [0, 100), got {keep_margin}")
            self.dynamics.config.keep_margin = float(keep_margin)
        self.reset_action = check_action(dynamics.config.reset_action, SCREEN)  # a_prev of the first step
        self.latent: torch.Tensor | None = None  # (1, C, 56, 56), float32
        self.frame: np.ndarray | None = None  # the decoded latent (224, 224, 3)
        self.decode_radius = self.vae.decode_radius()  # None: always decode whole frames
        self.last_delta: torch.Tensor | None = None
        self.prev_action: tuple[int, int, int] = self.reset_action
        # where the drag under way began (models.encoding); at the first step, that of the reset action
        self.reset_origin = torch.from_numpy(drag_origins(np.asarray([self.reset_action])))  # (1, 2)
        self.origin = self.reset_origin

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu", bf16: bool | None = None,
             window: int | None = None, keep_margin: float | None = None) -> "WorldModel":
        """Rebuild from `DIR/vae.*` and `DIR/dynamics.*`; refuses a pair that was not trained together."""
        directory = Path(directory)
        if directory.exists() and not directory.is_dir():
            raise CheckpointError(f"{directory}: a file, not a model directory (vae.* + dynamics.*)")
        if not directory.is_dir():
            raise CheckpointError(f"{directory}: no such model directory")
        vae_info, dyn_info = read_info(directory, vae_files.NAME), read_info(directory, DYNAMICS)
        vae = vae_files.load(directory)
        meta = dyn_info.get("meta", {})
        # The dynamics network lives in the encoder's latent space: a decoder retrained on a frozen
        # encoder still fits it.
        if meta.get("vae_encoder_sha256") is not None:
            have = vae_files.encoder_sha256(vae)
            if meta["vae_encoder_sha256"] != have:
                raise CheckpointError(f"{directory}: dynamics.safetensors was trained on the latents of a different "
                                      f"VAE encoder (sha256 {meta['vae_encoder_sha256'][:12]}…, this one is {have[:12]}…)")
        elif meta.get("vae_sha256") is not None and meta["vae_sha256"] != vae_info["weights"]["sha256"]:
            raise CheckpointError(f"{directory}: dynamics.safetensors was trained on a different VAE "
                                  f"(sha256 {meta['vae_sha256'][:12]}…, this one is {vae_info['weights']['sha256'][:12]}…)")
        return cls(vae, load_dynamics(directory), device=device, bf16=bf16, window=window, keep_margin=keep_margin)

    # ------------------------------------------------------------------------------ internals
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def _frames_in(self, frames: np.ndarray) -> torch.Tensor:
        _check_frames(frames, ndim=4, empty=True)
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
        return x.permute(0, 3, 1, 2).float().div(255.0).contiguous(memory_format=torch.channels_last)

    def _frames_out(self, z: torch.Tensor) -> np.ndarray:
        return self.vae.decode_uint8(z).cpu().numpy()

    @torch.no_grad()
    def encode(self, frames: np.ndarray) -> torch.Tensor:
        with self._autocast():
            return self.vae.encode(self._frames_in(frames)).float()

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> np.ndarray:
        with self._autocast():
            return self._frames_out(z)

    @torch.no_grad()
    def advance(self, z: torch.Tensor, prev: torch.Tensor, action: torch.Tensor,
                origin: torch.Tensor | None = None) -> torch.Tensor:
        """One latent step for a batch: z (B, C, H, W), prev/action (B, 3) -> next z (float32).
        `origin` (B, 2): where the drag under way at `action` began (`encoding.next_origins`), for
        a network that reads it (`drag_origin`); others ignore it.

        With a window, the network runs on the `window` x `window` cells centred between each
        sample's two cursors (its context reads the whole latent); the other cells are kept."""
        prev, action = prev.to(self.device), action.to(self.device)
        if origin is not None:
            origin = origin.to(self.device)
        n, w = z.shape[-1], self.window
        planes = self.dynamics.action_input(prev, action, n, origin).contiguous(memory_format=torch.channels_last)
        with self._autocast():
            if not 0 < w < n:
                return self.dynamics.step(z, planes).float()
            corner = window_corner(prev, action, n, w)
            x0, y0 = corner[:, 0].tolist(), corner[:, 1].tolist()

            def crop(t: torch.Tensor) -> torch.Tensor:
                parts = [t[i, :, y : y + w, x : x + w] for i, (x, y) in enumerate(zip(x0, y0))]
                return torch.stack(parts).contiguous(memory_format=torch.channels_last)

            pred = self.dynamics.step(crop(z), crop(planes), whole=z, whole_planes=planes)
            out = z.float().clone()
            for i, (x, y) in enumerate(zip(x0, y0)):
                out[i, :, y : y + w, x : x + w] = pred[i].float()
            return out

    # -------------------------------------------------------------------------- interactive
    def reset(self, frame: np.ndarray) -> np.ndarray:
        """Start from a frame (uint8 (224, 224, 3)): encode it once; returns the decoded frame."""
        _check_frames(frame, ndim=3)
        self.latent = self.encode(frame[None])
        self.last_delta = torch.zeros_like(self.latent)
        self.prev_action = self.reset_action
        self.origin = self.reset_origin
        self.frame = self.decode(self.latent)[0]
        return self.frame.copy()

    def step(self, action: Sequence[int]) -> np.ndarray:
        """Advance the rolling latent by one ActionStream step and return the decoded frame."""
        if self.latent is None:
            raise RuntimeError("call reset(frame) before step()")
        action = _check_step(action)
        prev, act = torch.tensor([self.prev_action]), torch.tensor([action])
        self.origin = next_origins(self.origin, prev, act)
        nxt = self.advance(self.latent, prev, act, self.origin)
        self.last_delta = nxt - self.latent
        self.frame = self._redraw(self.latent, nxt)
        self.latent = nxt
        self.prev_action = action
        return self.frame.copy()

    def _redraw(self, old: torch.Tensor, new: torch.Tensor) -> np.ndarray:
        """The frame of latent `new` (1, C, 56, 56), given `self.frame` = the frame of `old`."""
        r, n = self.decode_radius, new.shape[-1]
        if r is None or self.frame is None:
            return self.decode(new)[0]
        ys, xs = torch.nonzero((new != old).any(dim=1)[0], as_tuple=True)
        if len(ys) == 0:  # the last frame as it is (never written to; `step` hands out copies)
            return self.frame
        # Cells whose pixels may change, then the window that holds their whole receptive field.
        box = redraw_box((int(ys.min()), int(ys.max())), (int(xs.min()), int(xs.max())), r, n)
        if box is None:  # most of the map: one whole decode is as cheap
            return self.decode(new)[0]
        (py0, py1, px0, px1), (wy0, wy1, wx0, wx1) = box
        tile = self.decode(new[:, :, wy0:wy1, wx0:wx1])[0]
        s = SCREEN // n  # pixels per latent cell
        frame = self.frame.copy()
        frame[py0 * s : py1 * s, px0 * s : px1 * s] = tile[(py0 - wy0) * s : (py1 - wy0) * s, (px0 - wx0) * s : (px1 - wx0) * s]
        return frame

    @staticmethod
    def _check_rollout_size(episodes: int, steps: int) -> None:
        """ValueError when the frames of a rollout would not fit in the memory available
        (`_available_bytes`: the system's, and under cgroup v2 limits the cgroup's)."""
        need, available = episodes * steps * SCREEN * SCREEN * 3, _available_bytes()
        if available is not None and need > available:
            raise ValueError(f"a rollout of {episodes} x {steps} steps returns {need / 2**30:.1f} GiB of frames, "
                             f"more than the {available / 2**30:.1f} GiB of memory available; roll it out in pieces")

    @property
    def block_norms(self) -> list[float]:
        return list(self.dynamics.block_norms)

    def rollout(self, first_frames: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Batched rollout: first frames (B, 224, 224, 3), steps (B, T, 3) -> frames (B, T, 224, 224, 3).
        Refused (ValueError) before any work when the frames returned would not fit in the memory
        available: roll a long episode out in pieces, or step it."""
        _check_frames(first_frames, ndim=4)
        checked = _as_actions(actions, ndim=3)
        if checked.shape[0] != len(first_frames):
            raise ValueError(f"{len(first_frames)} first frames but actions for {checked.shape[0]} episodes")
        self._check_rollout_size(*checked.shape[:2])  # before the values are scanned: no work on a hopeless one
        a = torch.from_numpy(_check_action_values(checked).astype(np.int64))
        z = self.encode(first_frames)
        prev = torch.tensor([self.reset_action] * len(first_frames))
        origin = self.reset_origin.expand(len(prev), 2)
        out = np.empty((a.shape[0], a.shape[1], SCREEN, SCREEN, 3), dtype=np.uint8)
        for t in range(a.shape[1]):
            origin = next_origins(origin, prev, a[:, t])
            z = self.advance(z, prev, a[:, t], origin)
            out[:, t] = self.decode(z)
            prev = a[:, t]
        return out
