"""`evaluate`, `rollout` and `bench` end to end through the real CLI, with a tiny world model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from infinipaint.actions import ActionStream
from infinipaint.cli import main
from infinipaint.data.agents import EpisodeConfig
from infinipaint.data.generate import generate
from infinipaint.data.storage import DatasetReader
from infinipaint.evaluation.scoring import Tracker
from infinipaint.minipaint import LAYOUT, Minipaint, MinipaintState
from infinipaint.models.encoding import drag_origins
from infinipaint.models.world_model import WorldModel

from .conftest import assert_comparison_report, assert_scores_match_frames, make_model

ISSUE_KEYS = {"steps", "ssim_mean", "ssim_std", "psnr_mean", "psnr_std", "ceiling_ssim", "ceiling_psnr",
              "onset_095_mean", "onset_095_std", "phases", "regions", "responses", "eraser_l1",
              "empty_pen_strokes", "exact_share", "model", "data"}
PER_STEP = ("ssim_mean", "ssim_std", "psnr_mean", "psnr_std", "ceiling_ssim", "ceiling_psnr", "exact_share")
CX, CY = LAYOUT.center("canvas")


def check_schema(m: dict, n_steps: int) -> None:
    assert ISSUE_KEYS <= set(m)
    assert m["steps"] == list(range(1, n_steps + 1))
    for k in PER_STEP:
        assert len(m[k]) == n_steps and all(isinstance(v, float) for v in m[k]), k
    assert set(m["phases"]) == {"early", "mid", "late"}
    assert {"canvas", "toolbar"} <= set(m["regions"]) and len(m["regions"]["canvas"]["per_step"]) == n_steps
    assert {"pen", "eraser", "slider", "tool", "color", *(f"color{i}" for i in range(6))} <= set(m["responses"])
    for table in (m["eraser_l1"], m["empty_pen_strokes"], m["responses"]["pen"]):
        assert set(table) == {"early", "mid", "late"} and all({"value", "n"} <= set(v) for v in table.values())
    assert {"vae", "dynamics", "dir"} <= set(m["model"])
    assert all(0 <= v <= 1 for v in m["ssim_mean"] + m["exact_share"])


def replay(model_dir, data, keys: list[str], steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(truth, pred) uint8 (E, T, 224, 224, 3) of the first `steps` steps of recorded episodes, the
    prediction a rolling latent in fp32: the first frame encoded once, then `advance` (with each
    step's drag origin) and a whole decode per step."""
    wm = WorldModel.load(model_dir, bf16=False)
    reader = DatasetReader(data)
    truth = np.stack([reader.frames(k)[1 : steps + 1] for k in keys])
    actions = np.stack([reader.arrays(k)["actions"][: steps + 1].astype(np.int64) for k in keys])
    origins = torch.from_numpy(np.stack([drag_origins(a) for a in actions]))
    actions = torch.from_numpy(actions)
    z = wm.encode(np.stack([reader.frame(k, 0) for k in keys]))
    pred = []
    for t in range(1, steps + 1):
        z = wm.advance(z, actions[:, t - 1], actions[:, t], origins[:, t])
        pred.append(wm.decode(z))
    return truth, np.stack(pred, axis=1)


@pytest.mark.slow
def test_evaluate_end_to_end(tiny_model, eval_dataset, tmp_path, capsys):
    out = tmp_path / "eval"
    rc = main(["evaluate", "--model", str(tiny_model), "--data", str(eval_dataset), "--out", str(out),
               "--max-steps", "6", "--strip-steps", "1", "3", "--fp32", "--quiet"])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    check_schema(m, 6)
    assert m["data"]["episodes"] == ["3:5", "3:6"] and m["complete"] is True
    assert m["episodes_per_step"] == [2] * 6
    # The curves are the scores of the frames: the episodes replayed here, scored with infinipaint.metrics.
    assert_scores_match_frames(m, *replay(tiny_model, eval_dataset, ["3:5", "3:6"], 6))
    for f in ("curves.png", "exact.png", "regions.png", "strips.png", "rollout.gif", "report.md"):
        assert (out / f).stat().st_size > 0, f
    report = (out / "report.md").read_text()
    assert "0.995 / 36.0 dB" in report and "18.9 %" in report and "146 ± 94" in report
    # Comparison: a second run drawn on the same axes as the first one's saved results.
    both = tmp_path / "both"
    rc = main(["evaluate", "--model", str(tiny_model), "--data", str(eval_dataset), "--out", str(both),
               "--max-steps", "2", "--compare", str(out), "--ceiling-every", "0", "--quiet"])
    assert rc == 0
    assert (both / "compare.png").stat().st_size > 0
    # Each column says what its run's metrics.json says; the saved results of a model of the same
    # name are told apart by where they were read from.
    assert_comparison_report(both / "compare.md", [("tiny", json.loads((both / "tiny" / "metrics.json").read_text())),
                                                   (f"tiny ({tmp_path.name}/eval)", m)])
    # A dataset of its own seed is held out as a whole: --split all replays its first episodes.
    every = tmp_path / "all"
    rc = main(["evaluate", "--model", str(tiny_model), "--data", str(eval_dataset), "--out", str(every),
               "--split", "all", "--episodes", "3", "--max-steps", "2", "--ceiling-every", "0", "--quiet"])
    assert rc == 0
    assert json.loads((every / "metrics.json").read_text())["data"]["episodes"] == ["3:0", "3:1", "3:2"]
    assert json.loads((every / "metrics.json").read_text())["model"]["keep_margin"] == 0.0
    # The keep margin saved with the dynamics can be overridden for a run, and is recorded.
    rc = main(["evaluate", "--model", str(tiny_model), "--data", str(eval_dataset), "--out", str(every),
               "--max-steps", "2", "--ceiling-every", "0", "--keep-margin", "1.5", "--quiet"])
    assert rc == 0 and json.loads((every / "metrics.json").read_text())["model"]["keep_margin"] == 1.5
    capsys.readouterr()


def test_evaluate_interrupt_keeps_results(tiny_model, eval_dataset, tmp_path, monkeypatch, capsys):
    real = Tracker.update

    def update(self, step, *args, **kwargs):
        if step == 3:
            raise KeyboardInterrupt
        return real(self, step, *args, **kwargs)

    monkeypatch.setattr(Tracker, "update", update)
    out = tmp_path / "partial"
    rc = main(["evaluate", "--model", str(tiny_model), "--data", str(eval_dataset), "--out", str(out), "--quiet",
               "--ceiling-every", "0"])
    assert rc == 130
    m = json.loads((out / "metrics.json").read_text())
    assert m["complete"] is False and m["steps"] == [1, 2]
    assert (out / "report.md").exists()
    assert "partial results written" in capsys.readouterr().err


def test_evaluate_bad_inputs(tiny_model, eval_dataset, tmp_path, capsys):
    empty = tmp_path / "notest"
    generate(empty, episodes=2, seed=0, workers=1, config=EpisodeConfig(min_steps=5, max_steps=5), progress=False)
    assert main(["evaluate", "--model", str(tiny_model), "--data", str(empty), "--out", str(tmp_path / "o")]) == 2
    assert "test split is empty" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "vae.json").write_text((tiny_model / "vae.json").read_text())
    assert main(["evaluate", "--model", str(broken), "--data", str(eval_dataset), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "missing vae.safetensors, dynamics.json, dynamics.safetensors" in err and "Traceback" not in err
    assert main(["evaluate", "--model", str(tiny_model), "--data", str(tmp_path / "nodata"), "--out", str(tmp_path / "o")]) == 2
    assert "no manifest" in capsys.readouterr().err
    # Mismatched: a dynamics network trained on another VAE.
    other = make_model(tmp_path / "other", seed=1)
    for suffix in (".json", ".safetensors"):
        (other / f"dynamics{suffix}").write_bytes((tiny_model / f"dynamics{suffix}").read_bytes())
    assert main(["evaluate", "--model", str(other), "--data", str(eval_dataset), "--out", str(tmp_path / "o")]) == 2
    assert "trained on a different VAE" in capsys.readouterr().err


def events() -> list[list[int]]:
    """A raw pointer session: pick red, draw a stroke, switch to the eraser, erase across it."""
    red, eraser = LAYOUT.center("color1"), LAYOUT.center("eraser")
    return [[*red, 0], [*red, 1], [*red, 0], [CX - 40, CY, 0], [CX - 40, CY, 1], [CX + 30, CY + 5, 1],
            [CX + 30, CY + 5, 0], [*eraser, 0], [*eraser, 1], [*eraser, 0], [CX, CY - 10, 0], [CX, CY - 10, 1],
            [CX, CY + 20, 1], [CX, CY + 20, 0]]


@pytest.mark.slow
def test_rollout_end_to_end(tiny_model, tmp_path, capsys):
    actions = tmp_path / "session.json"
    actions.write_text(json.dumps({"actions": events()}))
    out = tmp_path / "rollout"
    assert main(["rollout", "--model", str(tiny_model), "--actions", str(actions), "--out", str(out),
                 "--save-frames", "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    steps = ActionStream.process(events())
    check_schema(m, len(steps))
    assert m["ssim"] == m["ssim_mean"] and m["actions"] == [list(s) for s in steps]
    assert m["responses"]["color1"]["early"]["n"] == 1 and m["responses"]["eraser"]["early"]["n"] == 1
    frames = np.load(out / "frames.npz")
    assert frames["truth"].shape == frames["pred"].shape == (len(steps), 224, 224, 3)
    assert frames["truth"].dtype == np.uint8 and frames["pred"].dtype == np.uint8
    app = Minipaint()
    app.reset()
    expected = np.stack([app.step(s) for s in steps])
    assert np.array_equal(frames["truth"], expected)  # row i is the frame after steps[i]
    assert_scores_match_frames(m, frames["truth"][None], frames["pred"][None])  # the numbers are those of the frames
    assert "written to" in capsys.readouterr().out


def test_rollout_raw_from_start_png(tiny_model, tmp_path, capsys):
    app = Minipaint()
    app.reset(MinipaintState(tool="pen", color=2, size=5))
    app.step((CX, CY, 1))
    start = app.step((CX, CY, 0))
    png = tmp_path / "start.png"
    Image.fromarray(start).save(png)
    raw = [[CX - 20, CY + 30, 1], [CX + 20, CY + 30, 1], [CX + 20, CY + 30, 0]]
    (tmp_path / "raw.json").write_text(json.dumps({"actions": raw}))
    out = tmp_path / "r"
    assert main(["rollout", "--model", str(tiny_model), "--actions", str(tmp_path / "raw.json"), "--out", str(out),
                 "--raw", "--start", str(png), "--save-frames", "--quiet"]) == 0
    frames = np.load(out / "frames.npz")
    assert np.array_equal(frames["truth"], np.stack([app.step(tuple(a)) for a in raw]))  # Minipaint went on from the PNG
    assert_scores_match_frames(json.loads((out / "metrics.json").read_text()), frames["truth"][None], frames["pred"][None])
    # A picture that is not a Minipaint screen, and one of the wrong size, are refused.
    noise = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "noise.png")
    Image.fromarray(start[:100]).save(tmp_path / "small.png")
    for bad, words in (("noise.png", "not a Minipaint toolbar"), ("small.png", "must be a 224x224 RGB image")):
        assert main(["rollout", "--model", str(tiny_model), "--actions", str(tmp_path / "raw.json"),
                     "--start", str(tmp_path / bad), "--out", str(out), "--quiet"]) == 2
        assert words in capsys.readouterr().err


@pytest.mark.parametrize("doc, words", [
    ({"actions": [[1, 2, 1], [3, 4]]}, "entry 1"),
    ({"actions": [[1, 2, 1], [300, 4, 0]]}, "entry 1 ([300, 4, 0]): action position (300, 4) outside"),
    ({"actions": [[1, 2, 2]]}, "entry 0"),
    ({"actions": [[1.5, 2, 0]]}, "entry 0"),
    ({"actions": ["1,2,0"]}, "entry 0: expected [x, y, down]"),
    ({"actions": []}, "the action list is empty"),
    ({"steps": [[1, 2, 0]]}, 'expected an object {"actions"'),
])
def test_rollout_bad_action_files(tiny_model, tmp_path, capsys, doc, words):
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(doc))
    assert main(["rollout", "--model", str(tiny_model), "--actions", str(f), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert words in err and str(f) in err


def test_rollout_missing_model(tmp_path, capsys):
    (tmp_path / "a.json").write_text(json.dumps({"actions": [[10, 50, 1]]}))
    assert main(["rollout", "--model", str(tmp_path / "nope"), "--actions", str(tmp_path / "a.json")]) == 2
    assert "no such model directory" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_json(tiny_model, tmp_path, capsys, monkeypatch):
    from infinipaint.evaluation import bench

    # Keep it short: one short agent episode for Minipaint, 24 frames for the model.
    monkeypatch.setattr(bench, "agent_actions", lambda episodes, seed=12345: [ActionStream.process(events())])
    real_frames = bench.bench_frames
    monkeypatch.setattr(bench, "bench_frames", lambda n=64, seed=12345: real_frames(24, seed))
    out = tmp_path / "bench"
    assert main(["bench", "--model", str(tiny_model), "--preset", "tiny", "--repeats", "2", "--batch", "4",
                 "--train-steps", "1", "--episodes", "1", "--json", "--out", str(out)]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r == json.loads((out / "bench.json").read_text())
    assert r["device"] == "cpu" and r["torch_threads"] >= 1
    for k in ("encode", "dynamics", "decode", "full_step"):
        assert r["world_model"][k]["median_ms"] > 0 and r["world_model"][k]["p95_ms"] >= r["world_model"][k]["median_ms"]
        assert r["ratios_vs_minipaint"][k] > 0
    assert r["world_model"]["full_step_whole_decode"]["median_ms"] > 0
    assert r["world_model"]["throughput"]["batch"] == 4 and r["world_model"]["throughput"]["frames_per_s"] > 0
    assert r["training"]["vae"]["samples_per_s"] > 0 and r["training"]["dynamics"]["samples_per_s"] > 0
    assert r["minipaint_step"]["median_ms"] > 0
