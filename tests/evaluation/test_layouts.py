"""The evaluation on a dataset of another layout ("column"): toolbar reading, region scores,
`evaluate`, `rollout --layout` and `eval vae` all take the layout the frames were drawn on."""

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
from infinipaint.evaluation import evaluate as evaluate_module
from infinipaint.evaluation.evaluate import dataset_episodes
from infinipaint.evaluation.scoring import frame_scores, read_toolbar
from infinipaint.minipaint import TOOLS, Minipaint, MinipaintState, get_layout

COLUMN = get_layout("column")
CX, CY = COLUMN.center("canvas")
BAND = (slice(0, 32), slice(0, 150))  # the default toolbar's rows, inside the column layout's canvas


@pytest.fixture(scope="module")
def column_dataset(tmp_path_factory):
    """7 episodes (40-60 steps) on the column layout, 3:5 and 3:6 in the test split; the first three
    press pen, eraser, colour 5 and the slider."""
    out = tmp_path_factory.mktemp("column") / "ds"
    generate(out, episodes=7, seed=3, workers=1, layout="column",
             config=EpisodeConfig(min_steps=40, max_steps=60), progress=False)
    return out


def test_read_toolbar_every_column_state():
    states = [(t, c, s) for t in TOOLS for c in range(len(COLUMN.colors)) for s in COLUMN.sizes]
    app = Minipaint("column")
    frames = np.stack([app.reset(MinipaintState(tool=t, color=c, size=s)) for t, c, s in states])
    got, dist = read_toolbar(frames, "column")
    assert got == states and np.all(dist == 0)
    assert read_toolbar(frames[:4], COLUMN)[0] == states[:4]  # a Layout works as well as its name
    assert np.all(read_toolbar(frames[:4])[1] > 0)  # the default layout's toolbars are elsewhere


def test_recorded_frames_read_exactly(column_dataset):
    reader = DatasetReader(column_dataset)
    frames = np.stack([reader.frame(k, t) for k in reader.keys() for t in (0, reader.steps(k))])
    assert np.all(read_toolbar(frames, "column")[1] == 0)


def test_region_scores_use_the_layout():
    truth = Minipaint("column").reset()[None]
    pred = truth.copy()
    pred[(0, *BAND)] = 0  # on the column layout: canvas pixels, far from the toolbar
    column, default = frame_scores(pred, truth, layout="column"), frame_scores(pred, truth)
    assert column["toolbar_ssim"][0] == pytest.approx(1.0, abs=1e-6) and column["canvas_ssim"][0] < 0.99
    assert default["toolbar_ssim"][0] < 0.5


class OracleModel:
    """A stand-in world model that steps Minipaint: its latents are the true frames; it decodes them
    with a black BAND, canvas on the column layout but toolbar on the default one."""

    def __init__(self, layout: str) -> None:
        self.layout = layout
        self.apps: list[Minipaint] = []

    def encode(self, frames: np.ndarray) -> np.ndarray:
        return frames.copy()

    def advance(self, z: np.ndarray, prev: torch.Tensor, action: torch.Tensor, origin=None) -> np.ndarray:
        if not self.apps:  # step 1: every episode is alive, each starts at a reset
            self.apps = [Minipaint(self.layout) for _ in range(len(z))]
        return np.stack([self.apps[i].step(tuple(action[i].tolist())) for i in range(len(z))])

    def decode(self, z: np.ndarray) -> np.ndarray:
        out = z.copy()
        out[(slice(None), *BAND)] = 0
        return out


@pytest.mark.slow
def test_evaluate_scores_on_the_dataset_layout(column_dataset, tmp_path, monkeypatch):
    assert dataset_episodes(column_dataset, 3, "all").layout == "column"
    monkeypatch.setattr(evaluate_module, "load_model", lambda *args, **kwargs: OracleModel("column"))
    monkeypatch.setattr(evaluate_module, "model_info", lambda model_dir, wm: {"dir": str(model_dir)})
    m = evaluate_module.evaluate(tmp_path / "oracle", column_dataset, episodes=3, split="all",
                                 out=tmp_path / "eval", progress=False)
    assert m["layout"] == json.loads((tmp_path / "eval" / "metrics.json").read_text())["layout"] == "column"
    assert m["regions"]["toolbar"]["early"] == pytest.approx(1.0, abs=1e-6)
    assert m["regions"]["canvas"]["early"] < 0.99
    pressed = {c: r["early"] for c, r in m["responses"].items() if r["early"]["n"]}
    assert {"pen", "eraser", "color5", "slider"} <= set(pressed)
    assert all(r["value"] == 1.0 for r in pressed.values())
    assert all(s["slips"] == 0 for s in m["toolbar_slips"]["phases"].values())
    assert "layout column" in (tmp_path / "eval" / "report.md").read_text()


@pytest.mark.slow
def test_evaluate_cli_on_column_dataset(tiny_model, eval_dataset, column_dataset, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(tiny_model), "--data", str(column_dataset), "--out", str(out),
                 "--split", "all", "--max-steps", "3", "--ceiling-every", "0", "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["layout"] == "column" and m["steps"] == [1, 2, 3] and m["complete"] is True
    assert len(m["regions"]["toolbar"]["per_step"]) == 3
    # A dataset that records no layout is on the default one.
    default = tmp_path / "default"
    assert main(["evaluate", "--model", str(tiny_model), "--data", str(eval_dataset), "--out", str(default),
                 "--max-steps", "1", "--ceiling-every", "0", "--quiet"]) == 0
    assert json.loads((default / "metrics.json").read_text())["layout"] == "default"
    capsys.readouterr()


def column_events() -> list[list[int]]:
    """Pick colour 1, draw a stroke, switch to the eraser, erase across it: on the column layout."""
    color, eraser = COLUMN.center("color1"), COLUMN.center("eraser")
    return [[*color, 0], [*color, 1], [*color, 0], [CX - 40, CY, 0], [CX - 40, CY, 1], [CX + 30, CY + 5, 1],
            [CX + 30, CY + 5, 0], [*eraser, 0], [*eraser, 1], [*eraser, 0], [CX, CY - 10, 0], [CX, CY - 10, 1],
            [CX, CY + 20, 1], [CX, CY + 20, 0]]


@pytest.mark.slow
def test_rollout_layout_column(tiny_model, tmp_path, capsys):
    actions = tmp_path / "session.json"
    actions.write_text(json.dumps({"actions": column_events()}))
    out = tmp_path / "rollout"
    assert main(["rollout", "--model", str(tiny_model), "--actions", str(actions), "--out", str(out),
                 "--layout", "column", "--save-frames", "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["layout"] == "column"
    assert m["responses"]["color1"]["early"]["n"] == 1 and m["responses"]["eraser"]["early"]["n"] == 1
    app = Minipaint("column")
    expected = np.stack([app.step(s) for s in ActionStream.process(column_events())])
    assert np.array_equal(np.load(out / "frames.npz")["truth"], expected)
    assert main(["rollout", "--model", str(tiny_model), "--actions", str(actions), "--out", str(out),
                 "--layout", "nope", "--quiet"]) == 2
    assert "unknown layout 'nope'" in capsys.readouterr().err


def test_rollout_start_png_on_column(tiny_model, tmp_path, capsys):
    app = Minipaint("column")
    app.reset(MinipaintState(tool="eraser", color=4, size=8))
    png = tmp_path / "start.png"
    Image.fromarray(app.frame()).save(png)
    raw = [[CX - 20, CY, 1], [CX + 20, CY, 1], [CX + 20, CY, 0]]
    (tmp_path / "raw.json").write_text(json.dumps({"actions": raw}))
    args = ["rollout", "--model", str(tiny_model), "--actions", str(tmp_path / "raw.json"),
            "--out", str(tmp_path / "r"), "--raw", "--start", str(png), "--save-frames", "--quiet"]
    assert main([*args, "--layout", "column"]) == 0
    assert np.array_equal(np.load(tmp_path / "r" / "frames.npz")["truth"], np.stack([app.step(tuple(a)) for a in raw]))
    assert main(args) == 2  # read on the default layout, the toolbar is no Minipaint toolbar
    assert "not a Minipaint toolbar of layout 'default'" in capsys.readouterr().err


def test_eval_vae_regions_of_column_dataset(column_dataset, tmp_path):
    from infinipaint.evaluation import vae_eval
    from infinipaint.models import vae as vae_files
    from infinipaint.models.vae import VAE, VAE_PRESETS

    torch.manual_seed(0)
    vae_files.save(VAE(VAE_PRESETS["tiny"]), tmp_path / "vae")
    m = vae_eval.evaluate_vae(tmp_path / "vae", column_dataset, tmp_path / "out", frames=8, batch=8, bf16=False,
                              pairs=6)
    assert m["layout"] == "column" and set(m["regions"]) == {"canvas", "toolbar"}
