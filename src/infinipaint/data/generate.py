"""Generating episode datasets: agents record episodes, shards are written atomically, resumably.

    from infinipaint.data.generate import generate
    manifest = generate("data/cpu", episodes=300, seed=0, workers=2)   # resumable, atomic shards
    generate("data/column", episodes=300, layout="column")             # another Minipaint layout

Episode i goes to shard i // E (E = episodes per shard, fixed by the first run); each shard is
recorded by one process, written as `*.<pid>.tmp`, fsynced and renamed (format: `data.storage`).
A rerun of the same command keeps every finished shard whose body hash checks out and records the
rest, so the result equals one clean run; a rerun with another seed, episode config or layout is
refused. The layout's name is stored under "layout" (omitted for "default", so those datasets are
byte-identical to ones written before layouts had names) next to its "layout_version".
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from infinipaint.data.agents import GENERATOR_VERSION, Episode, EpisodeConfig, record_episode
from infinipaint.data.storage import (
    DEFAULT_LAYOUT, END_MAGIC, FORMAT_VERSION, MAGIC, MANIFEST, SPLITS, TRAILER, ZSTD_LEVEL, ShardReader,
    check_compatible, episode_checksum, episode_key, file_hash, load_manifest, shard_name, split_of, zstd_codec,
)
from infinipaint.errors import CommandError, DataError
from infinipaint.minipaint import LAYOUTS

DEFAULT_EPISODES_PER_SHARD = 16


def _arrays_blob(ep: Episode) -> bytes:
    return b"".join(
        [
            ep.actions.astype("<i2").tobytes(),
            ep.kinds.astype(np.uint8).tobytes(),
            ep.activities.astype(np.uint8).tobytes(),
            ep.density.astype("<f4").tobytes(),
        ]
    )


def _config_meta(config: EpisodeConfig) -> dict[str, Any]:
    """The episode config as stored; `edge_work` and `drag_work` only when set, so that datasets
    written before they existed still match (with them 0, the same episodes are recorded)."""
    d = asdict(config)
    for name in ("edge_work", "drag_work"):
        if d[name] == 0:
            del d[name]
    return d


def _meta(seed: int, config: EpisodeConfig, episodes_per_shard: int, layout: str) -> dict[str, Any]:
    """What must match for shards and manifest to belong to one dataset (storage.IDENTITY)."""
    meta = {
        "format_version": FORMAT_VERSION,
        "generator_version": GENERATOR_VERSION,
        "layout_version": LAYOUTS[layout].version,
        "seed": int(seed),
        "config": _config_meta(config),
        "episodes_per_shard": int(episodes_per_shard),
        "zstd_level": ZSTD_LEVEL,
    }
    if layout != DEFAULT_LAYOUT:
        meta["layout"] = layout
    return meta


def write_shard(path: Path, shard: int, seed: int, indices: list[int], config: EpisodeConfig,
                episodes_per_shard: int, layout: str = DEFAULT_LAYOUT, parent_pid: int | None = None) -> dict[str, Any]:
    """Record the episodes on a layout and write them atomically to `path`; return the shard summary."""
    codec = zstd_codec()
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    body = hashlib.sha256()
    offsets: list[int] = []
    episodes = []
    with open(tmp, "wb") as f:
        pos = 0

        def put(blob: bytes) -> None:
            nonlocal pos
            offsets.append(pos)
            f.write(blob)
            body.update(blob)
            pos += len(blob)

        put(MAGIC)
        offsets.clear()
        for index in indices:
            if parent_pid is not None and os.getppid() != parent_pid:
                os._exit(1)  # orphaned by a killed `generate`: stop, leave only a *.tmp
            ep = record_episode(seed, index, config, layout)
            key = episode_key(seed, index)
            first = len(offsets)
            for frame in ep.frames:
                put(codec.encode(frame))
            put(codec.encode(_arrays_blob(ep)))
            episodes.append({
                "key": key, "index": int(index), "shard": shard, "steps": len(ep.frames) - 1,
                "first_blob": first, "checksum": episode_checksum(ep.frames, ep.actions),
                "split": split_of(key), "style": ep.style,
                "raw_samples": ep.raw_samples, "pause_samples": ep.pause_samples,
            })
        index_offset = pos
        offsets.append(pos)
        index_bytes = np.asarray(offsets, "<u8").tobytes()
        f.write(index_bytes)
        body.update(index_bytes)
        footer = {
            "format": "infinipaint-shard", **_meta(seed, config, episodes_per_shard, layout), "shard": shard,
            "episodes": episodes, "n_blobs": len(offsets) - 1, "index_offset": index_offset,
            "body_sha256": body.hexdigest(),
        }
        raw = json.dumps(footer, sort_keys=True).encode()
        f.write(raw)
        f.write(TRAILER.pack(len(raw), END_MAGIC))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return shard_summary(path, footer)


def shard_summary(path: Path, footer: dict[str, Any]) -> dict[str, Any]:
    return {
        "file": path.name, "bytes": path.stat().st_size, "sha256": file_hash(path),
        "episodes": [e["index"] for e in footer["episodes"]],
        "frames": sum(e["steps"] + 1 for e in footer["episodes"]),
        "_footer": footer,
    }


def _existing_shard(path: Path, meta: dict[str, Any], indices: list[int]) -> dict[str, Any] | None:
    """The summary of a finished shard that can be kept, or None if it must be (re)generated."""
    if not path.exists():
        return None
    try:
        reader = ShardReader(path)
        try:
            check_compatible(path, reader.footer, meta)
            if [e["index"] for e in reader.footer["episodes"]] != indices:
                return None  # the last shard of a smaller run: regenerate with the new episodes
            reader.check_body()
            return shard_summary(path, reader.footer)
        finally:
            reader.close()
    except DataError as e:
        if "was generated with" in str(e):
            raise
        print(f"generate: regenerating {path.name}: {e}", file=sys.stderr)
        return None


def _worker_init(parent_pid: int) -> None:
    """Pool workers die with their parent: a SIGKILLed `generate` leaves no orphan writing."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def generate(out: str | Path, episodes: int, seed: int = 0, workers: int = 1,
             episodes_per_shard: int | None = None, config: EpisodeConfig = EpisodeConfig(),
             progress: bool = True, layout: str = DEFAULT_LAYOUT) -> dict[str, Any]:
    """Generate (or complete, or grow) a dataset in `out` on a Minipaint layout (a key of
    minipaint.LAYOUTS); returns the manifest."""
    from tqdm import tqdm

    if episodes < 1 or workers < 1 or (episodes_per_shard is not None and episodes_per_shard < 1):
        raise CommandError("--episodes, --workers and --episodes-per-shard must be positive")
    if not isinstance(layout, str) or layout not in LAYOUTS:
        raise CommandError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    old = load_manifest(out) if (out / MANIFEST).exists() else None
    if episodes_per_shard is None:
        episodes_per_shard = old["episodes_per_shard"] if old else DEFAULT_EPISODES_PER_SHARD
    meta = _meta(seed, config, episodes_per_shard, layout)
    if old is not None:
        check_compatible(out / MANIFEST, old, meta)
        if old["n_episodes"] > episodes:
            raise DataError(f"{out / MANIFEST}: holds {old['n_episodes']} episodes; --episodes can only grow")
    for tmp in out.glob("*.tmp"):  # leftovers of a killed run
        tmp.unlink()
    n_shards = -(-episodes // episodes_per_shard)
    plan = {s: list(range(s * episodes_per_shard, min((s + 1) * episodes_per_shard, episodes))) for s in range(n_shards)}
    done: dict[int, dict[str, Any]] = {}
    for s, indices in tqdm(plan.items(), desc="checking shards", unit="shard", disable=not progress or not any(out.glob("shard-*"))):
        if (summary := _existing_shard(out / shard_name(s), meta, indices)) is not None:
            done[s] = summary
    todo = [s for s in plan if s not in done]
    bar = tqdm(total=sum(len(plan[s]) for s in todo), desc=f"generating {out}", unit="episode", disable=not progress)
    args = [(out / shard_name(s), s, seed, plan[s], config, episodes_per_shard, layout) for s in todo]
    if workers == 1 or len(todo) <= 1:
        for a in args:
            done[a[1]] = write_shard(*a)
            bar.update(len(a[3]))
    else:
        import multiprocessing as mp

        with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=mp.get_context("spawn"),
                                 initializer=_worker_init, initargs=(os.getpid(),)) as pool:
            futures = {pool.submit(write_shard, *a, os.getpid()): a for a in args}
            for fut in as_completed(futures):
                a = futures[fut]
                done[a[1]] = fut.result()
                bar.update(len(a[3]))
    bar.close()
    manifest = _manifest([done[s] for s in sorted(done)], meta)
    write_json_atomic(out / MANIFEST, manifest)
    return manifest


def _manifest(summaries: list[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    episodes = [dict(e) for s in summaries for e in s["_footer"]["episodes"]]
    for e in episodes:
        e.pop("first_blob")
    return {
        "format": "infinipaint-dataset", **meta,
        "n_episodes": len(episodes), "n_frames": sum(e["steps"] + 1 for e in episodes),
        "splits": {sp: [e["key"] for e in episodes if e["split"] == sp] for sp in SPLITS},
        "shards": [{k: v for k, v in s.items() if k != "_footer"} for s in summaries],
        "episodes": episodes,
    }


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
