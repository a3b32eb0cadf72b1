"""Sharded storage: determinism, splits, resume (SIGKILL included), corruption detection."""

import ast
import dataclasses
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from infinipaint.data.agents import EpisodeConfig, record_episode
from infinipaint.data.generate import generate
from infinipaint.data.storage import (
    MANIFEST, DatasetReader, ShardReader, episode_checksum, episode_key, layout_of, load_manifest, shard_name,
    split_of, verify,
)
from infinipaint.errors import DataError

from .conftest import TINY


def tree(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


def test_reader_returns_the_recorded_episode(tiny_dataset):
    r = DatasetReader(tiny_dataset)
    m = r.manifest
    assert m["n_episodes"] == 12 and len(m["shards"]) == 4
    ep = record_episode(7, 4, TINY)
    got = r.episode(4)
    np.testing.assert_array_equal(got["frames"], ep.frames)
    np.testing.assert_array_equal(got["actions"], ep.actions)
    np.testing.assert_array_equal(got["kinds"], ep.kinds)
    assert r.entries["7:4"]["checksum"] == episode_checksum(ep.frames, ep.actions)
    assert sorted(r.keys()) == sorted(r.keys("train") + r.keys("val") + r.keys("test"))
    assert verify(tiny_dataset, progress=False) == []


def test_same_seed_same_bytes_with_one_and_two_workers(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    generate(a, episodes=6, seed=1, workers=1, episodes_per_shard=2, config=TINY, progress=False)
    generate(b, episodes=6, seed=1, workers=2, episodes_per_shard=2, config=TINY, progress=False)
    assert tree(a) == tree(b)  # manifest and every shard byte-identical
    c = tmp_path / "c"
    generate(c, episodes=6, seed=2, workers=1, episodes_per_shard=2, config=TINY, progress=False)
    assert load_manifest(c)["episodes"][0]["checksum"] != load_manifest(a)["episodes"][0]["checksum"]


def test_split_is_a_stable_hash_of_the_key():
    keys = [episode_key(0, i) for i in range(20000)]
    counts = Counter(split_of(k) for k in keys)
    assert 0.88 < counts["train"] / 20000 < 0.92
    assert 0.04 < counts["val"] / 20000 < 0.06 and 0.04 < counts["test"] / 20000 < 0.06
    # pinned: the same split on every machine and Python (a salted hash() would not be)
    assert {k: split_of(k) for k in ("0:0", "0:5", "0:10", "0:16", "0:47")} == {
        "0:0": "train", "0:5": "val", "0:10": "test", "0:16": "val", "0:47": "val"}


def test_growing_n_keeps_old_episodes_and_splits(tmp_path):
    grown, fresh = tmp_path / "grown", tmp_path / "fresh"
    small = generate(grown, episodes=5, seed=0, workers=1, episodes_per_shard=2, config=TINY, progress=False)
    before = {p.name: p.read_bytes() for p in grown.glob("shard-*")}
    big = generate(grown, episodes=9, seed=0, workers=1, config=TINY, progress=False)
    old = {e["key"]: e for e in small["episodes"]}
    new = {e["key"]: e for e in big["episodes"]}
    assert all(new[k] == v for k, v in old.items())  # same checksum, same split, same shard
    for name in ("shard-00000.ips", "shard-00001.ips"):  # full shards untouched
        assert (grown / name).read_bytes() == before[name]
    generate(fresh, episodes=9, seed=0, workers=1, episodes_per_shard=2, config=TINY, progress=False)
    assert tree(grown) == tree(fresh)
    with pytest.raises(DataError, match="only grow"):
        generate(grown, episodes=4, seed=0, workers=1, config=TINY, progress=False)
    with pytest.raises(DataError, match="seed"):
        generate(grown, episodes=9, seed=1, workers=1, config=TINY, progress=False)
    edge = dataclasses.replace(TINY, edge_work=1.0)  # other episodes: not the same dataset
    with pytest.raises(DataError, match="config"):
        generate(grown, episodes=9, seed=0, workers=1, config=edge, progress=False)
    assert not {"edge_work", "drag_work"} & set(big["config"])  # unset, the manifest is that of earlier versions
    assert generate(tmp_path / "edge", episodes=1, seed=0, workers=1, config=edge,
                    progress=False)["config"]["edge_work"] == 1.0


def test_resume_regenerates_missing_and_partial_shards(tiny_dataset, tmp_path):
    d = tmp_path / "d"
    shutil.copytree(tiny_dataset, d)
    (d / MANIFEST).unlink()
    (d / "shard-00001.ips").unlink()
    data = (d / "shard-00002.ips").read_bytes()
    (d / "shard-00002.ips").write_bytes(data[: len(data) // 2])  # a torn file
    (d / "shard-00003.ips.999.tmp").write_bytes(b"partial")
    kept = (d / "shard-00000.ips").stat().st_mtime_ns
    generate(d, episodes=12, seed=7, workers=1, episodes_per_shard=3, config=TINY, progress=False)
    assert tree(d) == tree(tiny_dataset)
    assert (d / "shard-00000.ips").stat().st_mtime_ns == kept  # a finished shard is not rewritten


def group_alive(pgid: int) -> bool:
    """Whether a process of process group `pgid` still runs (zombies, dead and waiting to be reaped,
    do not count where /proc tells them apart)."""
    if not Path("/proc/self/stat").exists():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        state, _, group = stat[stat.rindex(")") + 2 :].split()[:3]
        if int(group) == pgid and state != "Z":
            return True
    return False


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_equals_clean_run(tmp_path):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    args = ["--episodes", "8", "--seed", "3", "--episodes-per-shard", "1", "--min-steps", "250",
            "--max-steps", "300", "--quiet"]
    generate(clean, episodes=8, seed=3, workers=1, episodes_per_shard=1, config=EpisodeConfig(250, 300),
             progress=False)
    cmd = [sys.executable, "-m", "infinipaint.cli", "generate", "--out", str(killed), "--workers", "2", *args]
    # its own process group: the pool workers it spawns can be found after it is gone
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 60
    while not any(killed.glob("shard-*.ips")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / MANIFEST).exists() and len(list(killed.glob("shard-*.ips"))) < 8  # really mid-run
    deadline = time.monotonic() + 60
    while group_alive(proc.pid):  # orphaned workers notice their parent is gone and exit
        assert time.monotonic() < deadline, "pool workers outlived their killed parent by a minute"
        time.sleep(0.01)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert tree(killed) == tree(clean)
    assert verify(killed, progress=False) == []


# ------------------------------------------------------------------------------- corruption
@pytest.fixture
def dataset_copy(tiny_dataset, tmp_path):
    d = tmp_path / "copy"
    shutil.copytree(tiny_dataset, d)
    return d


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def test_flipped_byte_in_a_frame_is_caught(dataset_copy):
    path = dataset_copy / shard_name(1)
    r = ShardReader(path)
    key = next(iter(r.episodes))
    first = r.episodes[key]["first_blob"]
    a, b = int(r.offsets[first + 3]), int(r.offsets[first + 4])
    r.close()
    flip(path, (a + b) // 2)
    problems = verify(dataset_copy, progress=False)
    assert problems and all(str(path) in p for p in problems)
    reader = DatasetReader(dataset_copy)
    with pytest.raises(DataError, match="corrupt") as e:
        reader.frame(key, 3)
    assert str(path) in str(e.value)
    with pytest.raises(DataError, match="hash"):
        ShardReader(path).check_body()


def test_truncated_shard_is_caught(dataset_copy):
    path = dataset_copy / shard_name(2)
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(DataError, match="truncated") as e:
        ShardReader(path)
    assert str(path) in str(e.value)
    assert any(str(path) in p for p in verify(dataset_copy, progress=False))
    path.write_bytes(b"")
    with pytest.raises(DataError, match=str(path)):
        ShardReader(path)


def test_wrong_or_broken_manifest_is_caught(dataset_copy):
    mpath = dataset_copy / MANIFEST
    m = json.loads(mpath.read_text())
    m["episodes"][0]["checksum"] = "0" * 32
    mpath.write_text(json.dumps(m))
    problems = verify(dataset_copy, progress=False)
    assert len(problems) == 1 and "checksum mismatch" in problems[0]
    m["shards"][0]["bytes"] += 1
    mpath.write_text(json.dumps(m))
    with pytest.raises(DataError, match="does not match"):
        DatasetReader(dataset_copy).frame(m["episodes"][0]["key"], 0)
    m["n_episodes"] = 99
    mpath.write_text(json.dumps(m))
    with pytest.raises(DataError, match=str(mpath)):
        DatasetReader(dataset_copy)
    mpath.write_text("{not json")
    with pytest.raises(DataError, match="corrupt manifest"):
        load_manifest(dataset_copy)
    assert verify(dataset_copy, progress=False) != []
    mpath.unlink()
    with pytest.raises(DataError, match="no manifest"):
        DatasetReader(dataset_copy)


def test_unknown_format_versions_are_refused(dataset_copy):
    mpath = dataset_copy / MANIFEST
    m = json.loads(mpath.read_text())
    mpath.write_text(json.dumps({**m, "format_version": 99}))
    with pytest.raises(DataError, match="unknown dataset format version 99"):
        load_manifest(dataset_copy)
    path = dataset_copy / shard_name(0)  # rewrite the shard footer with another version
    data = path.read_bytes()
    n = struct.unpack("<Q", data[-16:-8])[0]
    footer = json.loads(data[-16 - n : -16])
    raw = json.dumps({**footer, "format_version": 2}).encode()
    path.write_bytes(data[: -16 - n] + raw + struct.pack("<Q", len(raw)) + data[-8:])
    with pytest.raises(DataError, match="unknown shard format version 2") as e:
        ShardReader(path)
    assert str(path) in str(e.value)


# ---------------------------------------------------------------------------------- layouts
def test_layout_is_recorded_and_a_resume_on_another_is_refused(tiny_dataset, tmp_path):
    d = tmp_path / "column"
    m = generate(d, episodes=3, seed=7, workers=1, episodes_per_shard=2, config=TINY, progress=False, layout="column")
    assert layout_of(m) == "column" and m["layout"] == "column" and m["layout_version"] == 1
    assert all(layout_of(ShardReader(d / s["file"]).footer) == "column" for s in m["shards"])
    ep = record_episode(7, 2, TINY, "column")
    np.testing.assert_array_equal(DatasetReader(d).episode(2)["frames"], ep.frames)
    assert verify(d, progress=False) == []
    default = load_manifest(tiny_dataset)
    assert "layout" not in default and layout_of(default) == "default" and default["layout_version"] == 2
    before = tree(d)
    with pytest.raises(DataError, match="layout='column', this run asks for 'default'"):
        generate(d, episodes=3, seed=7, workers=1, config=TINY, progress=False)
    with pytest.raises(DataError, match="layout='default', this run asks for 'column'"):
        generate(tiny_dataset, episodes=12, seed=7, workers=1, config=TINY, progress=False, layout="column")
    generate(d, episodes=3, seed=7, workers=1, config=TINY, progress=False, layout="column")
    assert tree(d) == before


def _module_file(module: str, src: Path) -> Path | None:
    path = src.joinpath(*module.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def _imports(module: str, src: Path) -> set[str]:
    """Every infinipaint module that importing `module` imports, at module level or inside
    functions (as an import linter sees them), the packages above each included."""
    path = _module_file(module, src)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, `level - 1` packages up
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            found |= {base} | {f"{base}.{a.name}" for a in node.names if _module_file(f"{base}.{a.name}", src)}
    bits = [name.split(".") for name in found if name.split(".")[0] == "infinipaint"]
    return {".".join(b[:i]) for b in bits for i in range(1, len(b) + 1)}


def test_storage_imports_nothing_of_minipaint_or_the_agents():
    """The reading side stands alone: no import of the world or its agents, direct or indirect."""
    src = Path(__file__).resolve().parents[2] / "src"
    seen, todo = set(), ["infinipaint", "infinipaint.data", "infinipaint.data.storage"]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += sorted(_imports(m, src) - seen)
    assert not [m for m in seen if m.startswith("infinipaint.minipaint") or m.startswith("infinipaint.data.agents")
                or m == "infinipaint.data.generate"], sorted(seen)
    code = ("import sys, infinipaint.data.storage; "
            "print([m for m in sys.modules if m.startswith(('infinipaint.minipaint', 'infinipaint.data.agents', 'pygame'))])")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
