"""`infinipaint dream` headless: the frames shown are WorldModel.step's, panels render, the saved
action file replays through `rollout` to the same frames, bad input gives a clean error."""

from __future__ import annotations

import json
from argparse import Namespace

import numpy as np
import pygame
import pytest
import torch
from PIL import Image

from infinipaint.actions import ActionStream
from infinipaint.minipaint import Minipaint
from infinipaint.models.world_model import WorldModel
from infinipaint.viewer.dream import BOTTOM, Dream
from infinipaint.viewer.gif import LABEL_HEIGHT
from tests.conftest import run_cli

from .test_inference import FakeModel

SCALE = 2


@pytest.fixture(scope="module")
def session(tiny_model, script):
    """A finished headless replay of the script with the tiny model (bf16 as WorldModel's default)."""
    dream = Dream(WorldModel.load(tiny_model), scale=SCALE, replay=script, realtime=False, mouse=False)
    dream.run()
    yield dream
    dream.close()


def test_frames_shown_are_world_model_steps(session, tiny_model, script):
    steps = ActionStream.process(script)
    assert len(steps) > len(script) // 2
    assert session.steps == steps and session.samples == script and session.dropped == 0
    ref = WorldModel.load(tiny_model)
    threads = torch.get_num_threads()
    torch.set_num_threads(session.worker.threads)  # bf16 kernels may round differently with another count
    try:
        expected = [ref.reset(Minipaint().reset())] + [ref.step(s) for s in steps]
    finally:
        torch.set_num_threads(threads)
    assert len(session.frames) == len(expected)
    for i, frame in enumerate(expected):
        assert np.array_equal(session.frame(i), frame), f"frame {i} differs"
    assert np.array_equal(session.shown.frame, expected[-1])
    truth = Minipaint()
    truth.reset()
    for s in steps:
        truth.step(s)
    assert np.array_equal(session.truth, truth.frame())
    assert len(session.shown.norms) == len(ref.block_norms) and session.shown.delta.shape == (56, 56)


def test_panels_render_and_toggle(session, tmp_path):
    m, p = 224 * SCALE, 112 * SCALE
    assert session.window.canvas.get_size() == (m + 2 * p, m + BOTTOM)
    regions = {"truth": (m, 0, 2 * p, p), "trajectory": (m, p, p, p), "delta": (m + p, p, p, p),
               "norms": (m, m, 2 * p, BOTTOM - 22)}

    def grab() -> np.ndarray:
        session.draw(final=True)
        return pygame.surfarray.array3d(session.window.canvas).copy()  # (W, H, 3)

    before = grab()
    for name, (x, y, w, h) in regions.items():
        assert before[x : x + w, y : y + h].std() > 5, f"{name} panel looks empty"
        session.on_key({"truth": "t", "trajectory": "h", "delta": "d", "norms": "b"}[name])
        after = grab()
        assert not np.array_equal(after[x : x + w, y : y + h], before[x : x + w, y : y + h]), name
        assert np.array_equal(after[:m, :m], before[:m, :m])  # the model's frame is untouched
        session.toggle(name)
    assert np.array_equal(grab(), before)
    session.save(tmp_path)
    with Image.open(tmp_path / "screenshot.png") as img:
        assert img.size == (m + 2 * p, m + BOTTOM)
    with Image.open(tmp_path / "session.gif") as gif:
        assert gif.n_frames == len(session.frames) and gif.size == (3 * 224, 224 + LABEL_HEIGHT)  # captioned panels


@pytest.mark.slow
def test_saved_actions_replay_through_rollout(tiny_model, script, tmp_path):
    """The CLI end to end: dream --headless --save, then rollout --save-frames on its actions.json."""
    script = script[:16]  # short: the untrained model's noisy frames make slow GIFs
    (tmp_path / "script.json").write_text(json.dumps({"actions": script}))
    out = tmp_path / "dream"
    proc = run_cli("dream", "--model", tiny_model, "--replay", tmp_path / "script.json", "--headless",
                   "--save", out, "--save-frames", "--scale", "1", timeout=120)
    assert "steps from" in proc.stdout
    assert {"screenshot.png", "session.gif", "actions.json", "frames.npz"} <= {f.name for f in out.iterdir()}
    doc = json.loads((out / "actions.json").read_text())
    assert doc["actions"] == [list(s) for s in script] and "--threads 1" in doc["replay"]
    run_cli("rollout", "--model", tiny_model, "--actions", out / "actions.json", "--out", tmp_path / "rollout",
            "--save-frames", "--quiet", "--threads", "1", timeout=120)
    dream, rollout = np.load(out / "frames.npz"), np.load(tmp_path / "rollout" / "frames.npz")
    assert dream["pred"].shape == rollout["pred"].shape == (len(ActionStream.process(script)), 224, 224, 3)
    assert np.array_equal(dream["pred"], rollout["pred"])
    assert np.array_equal(dream["truth"], rollout["truth"])


def test_dropped_mouse_samples_are_counted_and_left_out(script):
    """When the queue is full a mouse sample is refused whole: counted, not recorded, the stream untouched."""
    model = FakeModel()
    dream = Dream(model, scale=1, queue=32, realtime=False, mouse=True)
    try:
        while dream.shown is None:
            dream.worker.wait(0.05)
            dream.consume()
        model.gate.clear()
        fed = [s for s in script if dream.feed(s)]
        assert len(fed) < len(script)  # the hung model filled the queue
        last = dream.stream.last
        assert not dream.feed((223, 223, 1)) and dream.stream.last == last
        model.gate.set()
        while not dream.worker.idle():
            dream.worker.wait(0.05)
            dream.consume()
        assert dream.steps == ActionStream.process(dream.samples)  # the saved samples replay exactly
        assert dream.samples == fed
    finally:
        dream.close()


@pytest.mark.slow
@pytest.mark.parametrize("files", [None, {"vae.json": "{not json", "vae.safetensors": "x",
                                          "dynamics.json": "{}", "dynamics.safetensors": "x"}])
def test_bad_model_dir_is_one_clean_line(tmp_path, script, files):
    (tmp_path / "script.json").write_text(json.dumps({"actions": script}))
    model = tmp_path / "model"
    if files is not None:
        model.mkdir()
        for name, text in files.items():
            (model / name).write_text(text)
    proc = run_cli("dream", "--model", model, "--replay", tmp_path / "script.json", "--headless", "--save",
                   tmp_path / "out", check=False, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("infinipaint dream: error:")
    assert str(model) in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_headless_needs_a_replay(tmp_path):
    proc = run_cli("dream", "--headless", "--save", tmp_path, check=False, timeout=60)
    assert proc.returncode == 2 and "--replay" in proc.stderr and "Traceback" not in proc.stderr


def test_play_shares_the_window():
    from infinipaint.minipaint.commands import play

    assert play(Namespace(scale=1, steps=3, layout="default")) == 0
    assert play(Namespace(scale=1, steps=3, layout="column")) == 0
