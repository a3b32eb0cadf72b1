"""The latent cache: every frame of a split encoded once by a frozen VAE, for dynamics training.

    from infinipaint.data.latents import build_latent_cache, LatentTransitionDataset
    cache = build_latent_cache("data/cpu", "weights/cpu", "train")   # data/cpu/latents/<vae>/train/
    ds = LatentTransitionDataset(cache, k=4)
    item = ds[0]   # {"z": float32 (K+1, C, 56, 56), "actions": int64 (K+1, 3), "origins": int64 (K+1, 2)}

The cache lives beside the data, keyed by the checksum of the VAE's encoder weights (the latent
depends on nothing else), so a new encoder never reads a stale cache while a decoder retrained with
`--freeze-encoder` keeps it: `DATA/latents/<encoder sha256[:16]>/<split>/` holds the latents of
all frames of all episodes of the split back to back, memory-mapped when read (`codes.npy`, uint8
(N, C, 56, 56) FSQ codes, for an FSQ encoder; `z.npy`, float16, for a continuous one),
`actions.npy` (int16 (N, 3)) and `index.json` (episode keys and their first row): frames and raw
actions, nothing else the recordings hold. It is written into a temp folder and
renamed when complete; a killed build resumes from the last episode it wrote, and a build of more
episodes copies those a finished cache already holds.
Windows follow the storage convention: `actions[0]` of a window is `a_prev` of its first transition.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from infinipaint.data.storage import DatasetReader
from infinipaint.errors import DataError
from infinipaint.models.vae import COMPRESSION
from infinipaint.precision import resolve_bf16


def available_memory() -> int | None:
    """Bytes of memory the OS can give without swapping (Linux's MemAvailable), or None elsewhere."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def cache_dir(data_root: str | Path, encoder_sha256: str, split: str) -> Path:
    return Path(data_root) / "latents" / encoder_sha256[:16] / split


Z_FILE = {"float16": "z.npy", "fsq_codes": "codes.npy"}  # the latent array of each cache format
PROGRESS = "progress.json"  # in the temp folder of a build under way: what is already written


def _latents_file(folder: Path, index: dict) -> Path:
    return folder / Z_FILE[index.get("format", "float16")]


def _open_latents(folder: Path, index: dict, mode: str = "r") -> np.ndarray:
    return np.load(_latents_file(folder, index), mmap_mode=mode)


def _as_values(rows: np.ndarray, index: dict) -> np.ndarray:
    """Cached rows as float32 latents (FSQ codes back to their values in [-1, 1])."""
    from infinipaint.models.vae import from_codes

    if index.get("format", "float16") == "fsq_codes":
        return from_codes(torch.from_numpy(np.array(rows)), index["levels"]).numpy()  # a copy: memmaps are read-only
    return np.asarray(rows, dtype=np.float32)


def _as_stored(z: torch.Tensor, index: dict) -> np.ndarray:
    """Latents (float) as the rows of a cache of `index`'s format."""
    from infinipaint.models.vae import to_codes

    if index["format"] == "fsq_codes":
        return to_codes(z, index["levels"]).to(torch.uint8).numpy()
    return z.float().numpy().astype(np.float16)


@torch.no_grad()
def _encode_frames(vae, frames: np.ndarray, batch: int, device: str, bf16: bool) -> torch.Tensor:
    """Latents (N, C, 56, 56) of uint8 frames (N, 224, 224, 3), `batch` at a time."""
    out = []
    for i in range(0, len(frames), batch):
        x = torch.from_numpy(frames[i : i + batch]).to(device).permute(0, 3, 1, 2).float().div(255.0)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            out.append(vae.encode(x.contiguous(memory_format=torch.channels_last)).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def encode_episode_cells(vae, frames: np.ndarray, batch: int = 32, device: str = "cpu",
                         bf16: bool | None = None) -> torch.Tensor:
    """The latents of an episode's frames (T, 224, 224, 3) under a cell-local encoder
    (`encoder_kernel=1`: a cell's code is a function of its own 4x4 pixels): the first frame whole,
    then only the cells each step changed, packed 3,136 to an image, and every other cell's code
    carried over from the frame before. A step changes a few dozen cells, so this encodes ~100x
    fewer pixels than every frame whole, with the same codes."""
    t, side = len(frames), frames.shape[1]
    g = side // COMPRESSION  # latent cells a side
    cells = frames.reshape(t, g, 4, g, 4, 3).transpose(0, 1, 3, 2, 4, 5)  # (T, 56, 56, 4, 4, 3), a view
    changed = np.zeros((t, g, g), dtype=bool)
    changed[0] = True
    changed[1:] = (cells[1:] != cells[:-1]).any(axis=(3, 4, 5))
    ts, ys, xs = np.nonzero(changed)  # in frame order
    picked = cells[ts, ys, xs]  # (n, 4, 4, 3)
    per_image = g * g
    pad = -len(picked) % per_image
    if pad:
        picked = np.concatenate([picked, np.full((pad, 4, 4, 3), 255, dtype=np.uint8)])
    images = picked.reshape(-1, g, g, 4, 4, 3).transpose(0, 1, 3, 2, 4, 5).reshape(-1, side, side, 3)
    codes = _encode_frames(vae, np.ascontiguousarray(images), batch, device, resolve_bf16(bf16, device))  # (m, C, 56, 56)
    codes = codes.permute(0, 2, 3, 1).reshape(-1, codes.shape[1])[: len(ts)]  # (n, C), in `picked` order
    z = torch.empty(t, codes.shape[1], g, g)
    counts = np.bincount(ts, minlength=t)
    start = 0
    for i in range(t):
        if i:
            z[i] = z[i - 1]
        stop = start + int(counts[i])
        z[i, :, ys[start:stop], xs[start:stop]] = codes[start:stop].T
        start = stop
    return z


@torch.no_grad()
def build_latent_cache(data_root: str | Path, vae_dir: str | Path, split: str, max_episodes: int = 0,
                       batch: int = 32, device: str = "cpu", bf16: bool | None = None) -> Path:
    """Encode every frame of `split` (the first `max_episodes` episodes if > 0); returns the cache dir.

    An FSQ encoder's latents are stored as uint8 codes (half of float16). The build resumes: a
    killed one goes on from the last episode it wrote, and episodes already in a finished cache of
    the same encoder (e.g. a smaller `max_episodes`) are copied, not encoded again."""
    from tqdm import tqdm

    from infinipaint.models import vae as vae_files

    vae = vae_files.load(vae_dir, map_location=device)
    bf16 = resolve_bf16(bf16, device)
    sha = vae_files.encoder_sha256(vae)
    out = cache_dir(data_root, sha, split)
    reader = DatasetReader(data_root)
    keys = reader.keys(split)[: max_episodes or None]
    if not keys:
        raise DataError(f"{data_root}: the {split} split is empty")
    old = _read_index(out)
    if old is not None and old["keys"] == keys:  # the same episodes: reuse
        return out
    fsq = vae.config.latent == "fsq"
    cell_local = vae.config.encoder_kernel == 1  # encode only the cells each step changed
    steps = [reader.steps(k) + 1 for k in keys]
    starts = np.concatenate([[0], np.cumsum(steps)]).tolist()
    c = vae.config.latent_channels
    index = {"encoder_sha256": sha, "split": split, "keys": keys, "starts": starts, "max_episodes": max_episodes,
             "latent_channels": c, "format": "fsq_codes" if fsq else "float16",
             **({"levels": vae.config.fsq_levels} if fsq else {})}
    tmp = out.with_name(out.name + ".tmp")
    progress = _read_progress(tmp, index)
    if progress is None:  # a fresh build
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        dtype = np.uint8 if fsq else np.float16
        g = reader.frame(keys[0], 0).shape[0] // COMPRESSION  # latent cells a side, from the data's frames
        np.lib.format.open_memmap(_latents_file(tmp, index), mode="w+", dtype=dtype, shape=(starts[-1], c, g, g))
        progress = 0
    z_all = _open_latents(tmp, index, mode="r+")
    old_z, reuse = _reusable(out, old, keys)
    bar = tqdm(total=starts[-1], initial=starts[progress], desc=f"encode {split} latents", unit="frame")
    for e in range(progress, len(keys)):
        start, stop = starts[e], starts[e + 1]
        if keys[e] in reuse:  # copied from the finished cache of fewer episodes
            src = reuse[keys[e]]
            z_all[start:stop] = _as_stored(torch.from_numpy(_as_values(old_z[src : src + stop - start], old)), index)
        else:
            frames = reader.frames(keys[e])
            encode = encode_episode_cells if cell_local else _encode_frames
            z_all[start:stop] = _as_stored(encode(vae, frames, batch, device, bf16), index)
        z_all.flush()
        (tmp / PROGRESS).write_text(json.dumps({**index, "done": e + 1}))
        bar.update(stop - start)
    bar.close()
    del z_all, old_z
    actions = np.zeros((starts[-1], 3), dtype=np.int16)
    for key, start, stop in zip(keys, starts, starts[1:]):
        actions[start:stop] = reader.arrays(key)["actions"]
    np.save(tmp / "actions.npy", actions)
    (tmp / "index.json").write_text(json.dumps(index))
    (tmp / PROGRESS).unlink()
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def _read_index(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "index.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _read_progress(tmp: Path, index: dict) -> int | None:
    """Episodes already written by an earlier build of the same cache into `tmp` (None: start afresh)."""
    try:
        progress = json.loads((tmp / PROGRESS).read_text())
        _open_latents(tmp, index)  # the array is there and readable
    except (OSError, ValueError):
        return None
    done = progress.pop("done", None)
    return done if progress == index and isinstance(done, int) and 0 <= done <= len(index["keys"]) else None


def _reusable(out: Path, old: dict | None, keys: list[str]) -> tuple[np.ndarray | None, dict[str, int]]:
    """The latents of the finished cache `out` and the first row there of each episode of `keys` it holds."""
    if old is None:
        return None, {}
    try:
        z = _open_latents(out, old)
    except (OSError, ValueError):
        return None, {}
    wanted = set(keys)
    return z, {k: s for k, s in zip(old["keys"], old["starts"]) if k in wanted}


class LatentTransitionDataset(Dataset):
    """Windows of K transitions over a latent cache: z[t:t+K+1], actions[t:t+K+1] of one episode,
    and the drag origins of those steps (`models.encoding.drag_origins` of the episode's actions)."""

    def __init__(self, cache: str | Path, k: int = 1) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.cache, self.k = Path(cache), k
        try:
            self.info = json.loads((self.cache / "index.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"{self.cache}: not a latent cache ({e})") from None
        starts = np.asarray(self.info["starts"], dtype=np.int64)
        lengths = np.diff(starts)
        per = np.maximum(lengths - k, 0)  # window starts per episode
        self.first_row = starts[:-1]
        self.offsets = np.concatenate([[0], np.cumsum(per)])
        self._z: np.ndarray | None = None
        self._actions: np.ndarray | None = None
        self._origins: np.ndarray | None = None
        self.sampling_weights: np.ndarray | None = None  # uniform: every window as likely

    def reset_action(self) -> tuple[int, int, int]:
        """The `a_prev` the recordings give an episode's first step (the most common one, should
        they differ): the world model starts every rollout from it."""
        first = np.load(self.cache / "actions.npy")[self.first_row].astype(np.int64)
        values, counts = np.unique(first, axis=0, return_counts=True)
        return tuple(int(v) for v in values[int(np.argmax(counts))])

    def _open(self) -> None:  # lazily, in the process that reads (DataLoader workers)
        from infinipaint.models.encoding import drag_origins

        self._z = _open_latents(self.cache, self.info)
        self._actions = np.load(self.cache / "actions.npy")
        starts = self.info["starts"]
        self._origins = np.concatenate([drag_origins(self._actions[a:b]) for a, b in zip(starts, starts[1:])]
                                       or [np.zeros((0, 2), np.int64)]).astype(np.int16)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def row(self, i: int) -> int:
        """Cache row of the first frame of window i."""
        return self.locate(i)[1]

    def locate(self, i: int) -> tuple[int, int]:
        """(episode index, cache row of the first frame) of window i."""
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} windows")
        e = int(np.searchsorted(self.offsets, i, side="right")) - 1
        return e, int(self.first_row[e] + i - self.offsets[e])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if self._z is None:
            self._open()
        e, r = self.locate(i)
        z = _as_values(self._z[r : r + self.k + 1], self.info)  # (K+1, C, 56, 56)
        a = self._actions[r : r + self.k + 1].astype(np.int64)  # (K+1, 3)
        o = self._origins[r : r + self.k + 1].astype(np.int64)  # (K+1, 2): where the drag under way began
        return {"z": torch.from_numpy(z), "actions": torch.from_numpy(a), "origins": torch.from_numpy(o)}

    def warm(self, chunk: int = 16 << 20) -> threading.Thread | None:
        """Read the latents file once, front to back, in a background thread, when it fits in the
        memory the OS reports available: training draws windows at random from a memory map, and
        on a cold page cache every window waits for the disk (a 15 GB cache read at random ran
        1.6x slower for its first ~10 minutes than once cached; read in order it took 70 s).
        Returns the thread (its `bytes_read` grows as it reads), or None when the file would not
        fit or the OS does not say."""
        path = _latents_file(self.cache, self.info)
        size, free = path.stat().st_size, available_memory()
        if free is None or size > 0.8 * free:
            return None

        def read() -> None:
            buf = bytearray(chunk)
            with open(path, "rb", buffering=0) as f:
                while n := f.readinto(buf):
                    thread.bytes_read += n

        thread = threading.Thread(target=read, name="warm-latent-cache", daemon=True)
        thread.bytes_read = 0
        thread.start()
        return thread

    def __getstate__(self) -> dict:  # workers reopen the memory map themselves
        return {**self.__dict__, "_z": None, "_actions": None, "_origins": None}

    def latent_stats(self, max_rows: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and std over (a strided sample of) the cached latents."""
        if self._z is None:
            self._open()
        stride = max(1, len(self._z) // max_rows)
        z = _as_values(self._z[::stride], self.info)
        return torch.from_numpy(z.mean(axis=(0, 2, 3))), torch.from_numpy(z.std(axis=(0, 2, 3)))


class MixedWindows(Dataset):
    """The windows of several latent datasets, drawn by the training loop in set shares.

        mix = MixedWindows([LatentTransitionDataset(main, k=12), LatentTransitionDataset(edge, k=12)], [0.9, 0.1])
        mix.sampling_weights   # per window; the windows of part i sum to shares[i]

    Each part as a whole is drawn with its share (so a small dataset of edge cases can make a
    tenth of every batch, whatever its size). Latent statistics are the first
    part's (the main dataset)."""

    def __init__(self, parts: list[LatentTransitionDataset], shares: list[float]) -> None:
        if not parts or len(parts) != len(shares):
            raise ValueError(f"{len(parts)} datasets but {len(shares)} shares")
        shares = np.asarray(shares, dtype=np.float64)
        if (shares <= 0).any() or not np.isclose(shares.sum(), 1.0):
            raise ValueError(f"shares must be positive and sum to 1, got {shares.tolist()}")
        if len({p.k for p in parts}) != 1:
            raise ValueError(f"the datasets have windows of different lengths: {[p.k for p in parts]}")
        if any(len(p) == 0 for p in parts):
            raise ValueError("a dataset of the mix has no window")
        self.parts, self.k = parts, parts[0].k
        self.offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])])
        weights = []
        for part, share in zip(parts, shares):
            w = part.sampling_weights if part.sampling_weights is not None else np.ones(len(part))
            weights.append(w / w.sum() * share)
        self.sampling_weights = np.concatenate(weights)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, i: int) -> tuple[int, int]:
        """(part, window within the part) of window i."""
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} windows")
        p = int(np.searchsorted(self.offsets, i, side="right")) - 1
        return p, i - int(self.offsets[p])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        p, j = self.locate(i)
        return self.parts[p][j]

    def warm(self) -> threading.Thread | None:
        """Warm every part's latents (see `LatentTransitionDataset.warm`); the main part's thread."""
        threads = [p.warm() for p in self.parts]
        return threads[0]

    def latent_stats(self, max_rows: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
        return self.parts[0].latent_stats(max_rows)
