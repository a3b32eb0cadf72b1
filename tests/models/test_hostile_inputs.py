"""Hostile inputs get one clear error, with bounded memory, and leave the state usable.

`WorldModel.reset/step/rollout` with wrong types, shapes, dtypes, NaN and huge integers (a
hypothesis fuzz: every input is either a valid one, which must work as on an untouched model, or
refused with ValueError); action files for `rollout` and `dream --replay` that are not JSON, are
nested wrongly, hold values that are not whole numbers or too many samples (refused before they
are parsed); model folders that are a file, empty or half-written."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from infinipaint.cli import main
from infinipaint.errors import CheckpointError, DataError
from infinipaint import action_files as rollout_module
from infinipaint.action_files import MAX_SAMPLES, read_actions
from infinipaint.minipaint import Minipaint
from infinipaint.models import vae as vae_files
from infinipaint.models import world_model as world_model_module
from infinipaint.models.world_model import WorldModel, load_dynamics
from tests.evaluation.conftest import make_model

SCREEN = 224
FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("hostile") / "tiny")


@pytest.fixture(scope="module")
def models(model_dir):
    """The model under attack and an untouched twin that only ever gets valid input."""
    return WorldModel.load(model_dir), WorldModel.load(model_dir)


@pytest.fixture(scope="module")
def first():
    return Minipaint().reset()


# ------------------------------------------------------------------------------ the model API
def is_step(action) -> bool:
    """The contract: a tuple, list or integer array of three ints, 0 <= x, y < 224, down 0 or 1."""
    if isinstance(action, np.ndarray):
        if action.shape != (3,) or not np.issubdtype(action.dtype, np.integer):
            return False
        action = action.tolist()
    elif not isinstance(action, (tuple, list)):
        return False
    if len(action) != 3 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in action):
        return False
    x, y, down = action
    return 0 <= x < SCREEN and 0 <= y < SCREEN and down in (0, 1)


values = st.one_of(st.integers(-3, 227), st.integers(-2**80, 2**80), st.sampled_from([0, 1, 223, 224, 2**63, -2**63]),
                   st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none(), st.text(max_size=3),
                   st.just([1]), st.just(np.float32(3.0)), st.just(np.int16(7)))
array_dtypes = st.sampled_from([np.int8, np.int16, np.int64, np.uint8, np.uint64, np.float32, np.float64, np.bool_])
actions = st.one_of(
    st.tuples(st.integers(0, 223), st.integers(0, 223), st.integers(0, 1)),  # valid
    st.lists(st.integers(0, 223), min_size=3, max_size=3),  # valid: a list
    st.tuples(values, values, values), st.lists(values, max_size=5),
    hnp.arrays(array_dtypes, st.sampled_from([(3,), (2,), (4,), (1, 3), ()])),
    st.text(max_size=4), st.binary(max_size=4), st.none(), st.floats(allow_nan=True), st.integers(),
    st.dictionaries(st.integers(0, 3), st.integers(0, 3), max_size=3), st.sets(st.integers(0, 5), max_size=3),
    st.just(range(3)), st.just(iter((1, 2, 0))), st.just(np.zeros((10**6, 3), np.int64)),
)


@FUZZ
@given(st.lists(actions, min_size=1, max_size=8))
def test_step_fuzz(models, first, inputs):
    wm, twin = models
    wm.reset(first)
    twin.reset(first)
    for action in inputs:
        event("valid step" if is_step(action) else "refused step")
        if is_step(action):
            valid = tuple(int(v) for v in (action.tolist() if isinstance(action, np.ndarray) else action))
            assert np.array_equal(wm.step(action), twin.step(valid))
        else:
            with pytest.raises(ValueError, match="action"):
                wm.step(action)
    # Every refusal left the state as it was: the attacked model is where the twin is.
    assert torch.equal(wm.latent, twin.latent) and wm.prev_action == twin.prev_action
    assert np.array_equal(wm.step((100, 100, 1)), twin.step((100, 100, 1)))


def frames_of(dtype, shape, fill) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        return np.full(shape, fill).astype(dtype, casting="unsafe")


frame_shapes = st.sampled_from([(224, 224, 3), (224, 224), (224, 224, 4), (1, 224, 224, 3), (0, 224, 3), (3,), ()])
frame_fills = st.sampled_from([0, 255, -1, 300, 2**40, np.nan, np.inf, 0.5])
frames = st.one_of(
    st.builds(frames_of, st.just(np.uint8), st.just((224, 224, 3)), frame_fills),  # valid
    st.builds(frames_of, st.sampled_from([np.uint8, np.int64, np.float32, np.float64, np.bool_, np.int8]), frame_shapes,
              frame_fills),
    st.text(max_size=5), st.none(), st.integers(), st.lists(st.integers(0, 255), max_size=4), st.binary(max_size=8),
    st.just([[[255, 255, 255]] * 224] * 224),  # the right values, as lists
)


def is_frame(frame) -> bool:
    return isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.shape == (224, 224, 3)


@FUZZ
@given(frames)
def test_reset_fuzz(models, first, frame):
    wm, twin = models
    wm.reset(first)
    twin.reset(first)
    wm.step((50, 60, 1))
    twin.step((50, 60, 1))
    event("valid frame" if is_frame(frame) else "refused frame")
    if is_frame(frame):
        assert np.array_equal(wm.reset(frame), twin.reset(frame))
    else:
        with pytest.raises(ValueError, match="frames must be"):
            wm.reset(frame)
    assert torch.equal(wm.latent, twin.latent) and wm.prev_action == twin.prev_action
    assert np.array_equal(wm.step((70, 60, 1)), twin.step((70, 60, 1)))


rollout_actions = st.one_of(
    st.builds(lambda b, t, x, y, d: np.array([[[x, y, d]] * t] * b, dtype=np.int64).reshape(b, t, 3),
              st.integers(1, 2), st.integers(0, 2), st.integers(0, 223), st.integers(0, 223), st.integers(0, 1)),
    hnp.arrays(array_dtypes, st.sampled_from([(1, 2, 3), (2, 1, 3), (1, 2, 4), (1, 3), (1, 1, 1, 3), (0, 1, 3)])),
    st.lists(st.lists(st.lists(values, max_size=4), max_size=3), max_size=2),
    st.text(max_size=4), st.none(), st.dictionaries(st.integers(), st.integers(), max_size=2),
)
first_frames = st.one_of(st.sampled_from(["one", "two", "single", "float", "empty"]), frames)


@st.composite
def valid_rollouts(draw):
    b, t = draw(st.integers(1, 2)), draw(st.integers(0, 3))
    steps = st.tuples(st.integers(0, 223), st.integers(0, 223), st.integers(0, 1))
    acts = draw(st.lists(st.lists(steps, min_size=t, max_size=t), min_size=b, max_size=b))
    dtype = draw(st.sampled_from([np.int16, np.int64, np.uint8, None]))  # None: nested lists as they are
    return ("one", "two")[b - 1], acts if dtype is None or t == 0 else np.asarray(acts, dtype=dtype)


@FUZZ
@given(st.one_of(valid_rollouts(), st.tuples(first_frames, rollout_actions)))
def test_rollout_fuzz(models, first, case):
    which, acts = case
    wm, twin = models
    wm.reset(first)
    twin.reset(first)
    named = {"one": first[None], "two": np.stack([first, first]), "single": first, "float": first[None] / 255.0,
             "empty": np.zeros((0, 224, 224, 3), np.uint8)}
    fr = named.get(which, which) if isinstance(which, str) else which
    try:  # the contract: an integer array-like (B, T, 3) of valid steps, B matching the frames
        a = np.asarray(acts)
    except (ValueError, TypeError, OverflowError):
        a = None
    frames_ok = isinstance(fr, np.ndarray) and fr.dtype == np.uint8 and fr.ndim == 4 and fr.shape[1:] == (224, 224, 3)
    valid = (frames_ok and len(fr) >= 1 and a is not None and a.ndim == 3 and a.shape == (len(fr), a.shape[1], 3)
             and np.issubdtype(a.dtype, np.integer) and bool((a[..., :2] >= 0).all() and (a[..., :2] < 224).all()
                                                              and np.isin(a[..., 2], (0, 1)).all()))
    event("valid rollout" if valid else "refused rollout")
    if valid:
        out = wm.rollout(fr, a)
        assert out.shape == (*a.shape[:2], 224, 224, 3) and out.dtype == np.uint8
    else:
        with pytest.raises(ValueError):
            wm.rollout(fr, acts)
    # A rollout never touches the interactive state.
    assert torch.equal(wm.latent, twin.latent)
    assert np.array_equal(wm.step((10, 60, 0)), twin.step((10, 60, 0)))


def no_work(monkeypatch, wm) -> None:
    """Make any work of a rollout past its checks of shape and size fail the test."""
    def fail(*args, **kwargs):
        raise AssertionError("the rollout did work before refusing")

    monkeypatch.setattr(world_model_module, "_check_action_values", fail)
    monkeypatch.setattr(wm, "encode", fail)


@pytest.mark.skipif(not Path("/proc/meminfo").exists(), reason="the memory available is read from /proc/meminfo")
def test_rollout_too_big_for_memory_is_refused_at_once(models, first, monkeypatch):
    wm, _ = models
    steps = np.zeros((1, 10**7, 3), np.int8)  # 30 MB of steps, 1.4 TB of frames
    no_work(monkeypatch, wm)  # refused before the values are scanned or the first frame encoded
    with pytest.raises(ValueError, match=r"returns 1401\.9 GiB of frames, more than the .* GiB of memory available"):
        wm.rollout(first[None], steps)


def fake_cgroup(root: Path, limit: str, current: int, inactive_file: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "memory.max").write_text(limit + "\n")
    (root / "memory.current").write_text(f"{current}\n")
    (root / "memory.stat").write_text(f"anon {current - inactive_file}\ninactive_file {inactive_file}\nactive_file 0\n")
    return root


def test_rollout_honours_a_cgroup_memory_limit(models, first, tmp_path, monkeypatch):
    """Under a cgroup v2 limit the room is memory.max - memory.current + reclaimable file cache,
    whatever the host has free; without a limit ("max") the host's figure stands."""
    wm, _ = models
    monkeypatch.setattr(world_model_module, "CGROUP", fake_cgroup(tmp_path / "cg", "max", 10**9, 0))
    host = world_model_module._meminfo_available()
    assert world_model_module._cgroup_available() is None and world_model_module._available_bytes() == host
    fake_cgroup(tmp_path / "cg", str(400 * 2**20), 300 * 2**20, 50 * 2**20)  # 150 MiB of room
    assert world_model_module._cgroup_available() == 150 * 2**20
    assert world_model_module._available_bytes() == min(150 * 2**20, host or 2**62)
    steps = np.zeros((1, 1100, 3), np.int64)  # 1,100 frames: 158 MiB
    no_work(monkeypatch, wm)
    with pytest.raises(ValueError, match=r"returns 0\.2 GiB of frames, more than the .* GiB of memory available"):
        wm.rollout(first[None], steps)
    fake_cgroup(tmp_path / "cg", str(400 * 2**20), 500 * 2**20, 0)  # over its limit: no room at all
    assert world_model_module._cgroup_available() == 0


def test_a_string_frame_is_refused_clearly(models):
    """A string passed as a frame is refused by what it is, not by a failed indexing."""
    wm, _ = models
    with pytest.raises(ValueError, match=r"frames must be a numpy array uint8 \(224, 224, 3\), got str"):
        wm.reset("frame.png")


# ----------------------------------------------------------------------------- model folders
def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def half_written(src: Path, dst: Path, how: str) -> Path:
    shutil.copytree(src, dst)
    if how == "killed before the JSON":  # checkpoint.save_weights writes the JSON last, via NAME.json.tmp
        (dst / "dynamics.json").rename(dst / "dynamics.json.tmp")
    elif how == "truncated weights":
        data = (dst / "dynamics.safetensors").read_bytes()
        (dst / "dynamics.safetensors").write_bytes(data[: len(data) // 2])
    elif how == "truncated JSON":
        text = (dst / "vae.json").read_text()
        (dst / "vae.json").write_text(text[: len(text) // 2])
    elif how == "huge weights":  # a sparse file: refused by its size before it is read
        with open(dst / "vae.safetensors", "r+b") as f:
            f.truncate(4 * 2**30)
    return dst


@pytest.mark.parametrize("how, words", [
    ("a file", "a file, not a model directory"),
    ("empty", "vae.json: no such file"),
    ("killed before the JSON", "dynamics.json: no such file"),
    ("truncated weights", "dynamics.safetensors: truncated or wrong file"),
    ("truncated JSON", "vae.json: not valid JSON"),
    ("huge weights", "vae.safetensors: truncated or wrong file: 4294967296 bytes"),
])
def test_bad_model_folders(model_dir, tmp_path, capsys, monkeypatch, how, words):
    bad = tmp_path / "model"
    if how == "a file":
        bad.write_text("not a folder")
    elif how == "empty":
        bad.mkdir()
    else:
        half_written(model_dir, bad, how)
    if how == "huge weights":  # refused by its size: its bytes are never read
        monkeypatch.setattr(Path, "read_bytes", never_read)
    with pytest.raises(CheckpointError, match=words.replace("(", r"\(")) as e:
        WorldModel.load(bad)
    assert str(bad) in str(e.value)
    # The commands: one line naming the folder, exit status 2.
    (tmp_path / "a.json").write_text(json.dumps({"actions": [[10, 50, 1], [12, 50, 0]]}))
    assert main(["rollout", "--model", str(bad), "--actions", str(tmp_path / "a.json"), "--out", str(tmp_path / "o"),
                 "--quiet"]) == 2
    assert str(bad) in one_line(capsys)


def never_read(path, *args, **kwargs):
    raise AssertionError(f"{path} was read")


@pytest.mark.parametrize("name, load", [("vae", vae_files.load), ("dynamics", load_dynamics)])
def test_weights_of_the_wrong_size_are_never_read(model_dir, tmp_path, monkeypatch, name, load):
    """Every loader goes through `checkpoint.load_weights`, which checks the size before reading."""
    bad = tmp_path / "model"
    shutil.copytree(model_dir, bad)
    with open(bad / f"{name}.safetensors", "r+b") as f:
        f.truncate(4 * 2**30)  # sparse: 4 GiB that take no disk
    monkeypatch.setattr(Path, "read_bytes", never_read)
    with pytest.raises(CheckpointError, match=f"{name}.safetensors: truncated or wrong file: 4294967296 bytes"):
        load(bad)


# ------------------------------------------------------------------------------ action files
BAD_FILES = [
    ("not JSON", b"[[1, 2, 0], [3", "not valid JSON"),
    ("not UTF-8", b'{"actions": [[1, 2, 0]]}\xff\xfe', "not valid JSON"),
    ("a list, not an object", b"[[1, 2, 0]]", 'expected an object {"actions"'),
    ("actions an object", b'{"actions": {"0": [1, 2, 0]}}', 'expected an object {"actions"'),
    ("nested one deeper", b'{"actions": [[[1, 2, 0]]]}', "entry 0 ([[1, 2, 0]]): action must have 3 entries"),
    ("flat", b'{"actions": [1, 2, 0]}', "entry 0: expected [x, y, down], got 1"),
    ("nested too deeply", b'{"actions": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    ("a fraction", b'{"actions": [[1.5, 2, 0]]}', "entry 0 ([1.5, 2, 0]): action x must be an integer, got 1.5"),
    ("a boolean", b'{"actions": [[1, 2, true]]}', "values must be whole numbers, got true"),
    ("a string", b'{"actions": [[1, "2", 0]]}', 'values must be whole numbers, got "2"'),
    ("null", b'{"actions": [[1, 2, null]]}', "values must be whole numbers, got null"),
    ("NaN", b'{"actions": [[NaN, 2, 0]]}', "action x is not finite: nan"),
    ("Infinity", b'{"actions": [[1, -Infinity, 0]]}', "action y is not finite: -inf"),
    ("a huge integer", b'{"actions": [[1' + b"0" * 30 + b', 2, 0]]}', "outside the 224x224 screen"),
    ("an integer of 5,000 digits", b'{"actions": [[' + b"9" * 5000 + b", 2, 0]]}", "not valid JSON"),
    ("out of range", b'{"actions": [[1, 2, 0], [-1, 2, 0]]}', "entry 1 ([-1, 2, 0]): action position (-1, 2) outside"),
    ("empty", b'{"actions": []}', "the action list is empty"),
    ("300,000 samples", b'{"actions": [' + b"[1,2,0]," * 300_000 + b"[1,2,0]]}",
     f"more than {MAX_SAMPLES:,} entries, too long for an action file, which holds at most {MAX_SAMPLES:,} samples "
     "(5.6 hours at 80 ms): split it"),
    ("millions of samples", b'{"actions": [' + b"[1,2,0]," * 3_000_000 + b"[1,2,0]]}",
     f"MiB, too big for an action file, which holds at most 16 MiB and {MAX_SAMPLES:,} samples"),
]
BY_NAME = {b[0]: b for b in BAD_FILES}


@pytest.mark.parametrize("name, data, words", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_action_files(tmp_path, name, data, words):
    path = tmp_path / "bad.json"
    path.write_bytes(data)
    with pytest.raises(DataError) as e:
        read_actions(path)
    assert words in str(e.value) and str(path) in str(e.value)
    assert len(str(e.value)) < 400  # a line, not the file


def test_too_many_samples_are_refused_before_parsing(tmp_path, monkeypatch):
    path = tmp_path / "long.json"
    path.write_text(json.dumps({"actions": [[1, 2, 0]] * (MAX_SAMPLES + 1)}))

    def no_parsing(*args, **kwargs):
        raise AssertionError("the file was parsed")

    monkeypatch.setattr(rollout_module.json, "loads", no_parsing)
    with pytest.raises(DataError, match="more than 250,000 entries, too long"):
        read_actions(path)


def test_too_many_bytes_are_refused_with_a_bounded_read(tmp_path, monkeypatch):
    monkeypatch.setattr(rollout_module, "MAX_BYTES", 4096)
    path = tmp_path / "big.json"
    path.write_text('{"actions": [[1, 2, 0]], "note": "' + "x" * 5000 + '"}')
    with pytest.raises(DataError, match="too big for an action file"):
        read_actions(path)
    if Path("/dev/zero").exists():  # endless: only MAX_BYTES + 1 of it are read
        with pytest.raises(DataError, match="too big for an action file"):
            read_actions("/dev/zero")
    with pytest.raises(DataError, match="cannot read action file"):
        read_actions(tmp_path)  # a folder


def test_whole_number_floats_are_accepted(tmp_path):
    """As Minipaint's validate_action takes them: 1.0 is 1 (a file written by another tool)."""
    path = tmp_path / "floats.json"
    path.write_text('{"actions": [[1.0, 2, 0], [100, 120.0, 1.0], [3e1, 0.0, -0.0]]}')
    got = read_actions(path)
    assert got == [(1, 2, 0), (100, 120, 1), (30, 0, 0)] and all(type(v) is int for a in got for v in a)


def test_a_long_session_file_is_accepted(tmp_path):
    """A 2-hour session (90,000 samples), as `dream` writes it, is well inside the limits."""
    samples = [[i % 224, (i // 224) % 224, i % 2] for i in range(90_000)]
    path = tmp_path / "actions.json"
    path.write_text(json.dumps({"actions": samples, "steps": 123_456, "note": "raw pointer samples"}))
    assert path.stat().st_size < rollout_module.MAX_BYTES / 4
    assert read_actions(path) == [tuple(s) for s in samples]


@pytest.mark.parametrize("command", ["rollout", "dream"])
@pytest.mark.parametrize("name, data, words", [BY_NAME[n] for n in ("not JSON", "a fraction", "millions of samples")],
                         ids=["not JSON", "a fraction", "millions of samples"])
def test_bad_action_files_in_the_commands(model_dir, tmp_path, capsys, command, name, data, words):
    path = tmp_path / "bad.json"
    path.write_bytes(data)
    args = (["rollout", "--model", str(model_dir), "--actions", str(path), "--out", str(tmp_path / "o"), "--quiet"]
            if command == "rollout" else
            ["dream", "--model", str(model_dir), "--replay", str(path), "--headless", "--save", str(tmp_path / "o")])
    env = dict(os.environ)
    try:
        assert main(args) == 2
    finally:
        os.environ.clear()
        os.environ.update(env)  # `dream` sets SDL_VIDEODRIVER for itself
    err = one_line(capsys)
    assert err.startswith(f"infinipaint {command}: error: {path}") and words in err
    assert not (tmp_path / "o").exists()
