"""The recipe carries over: Minipaint with another layout (the toolbar a column on the right, other
colours, another brush range) trains a tiny VAE and dynamics network end to end with no code
change, and the world model rolls out its episodes."""

import json

import numpy as np
import pytest

from infinipaint.data.storage import DatasetReader, layout_of
from infinipaint.minipaint import LAYOUTS, Minipaint
from infinipaint.models.world_model import WorldModel

from ..conftest import run_cli
from .conftest import FP32, metrics


@pytest.mark.slow
def test_tiny_world_model_trains_and_rolls_out_on_the_column_layout(tmp_path):
    data = tmp_path / "column"
    run_cli("generate", "--out", data, "--episodes", "12", "--seed", "3", "--layout", "column",
            "--min-steps", "30", "--max-steps", "40", "--quiet")
    reader = DatasetReader(data)
    assert layout_of(reader.manifest) == "column"
    vae = tmp_path / "vae"
    run_cli("train", "vae", "--data", data, "--preset", "tiny", "--out", vae, *FP32, "--steps", "6",
            "--model-set", "latent=fsq", "--model-set", "output=palette", "--model-set", "encoder_kernel=1")
    palette = json.loads((vae / "model" / "vae.json").read_text())["config"]["palette"]
    column = LAYOUTS["column"]
    assert all(list(c) in palette for c in column.colors)  # the palette is the one found in this world's frames
    dyn = tmp_path / "dyn"
    run_cli("train", "dynamics", "--data", data, "--vae", vae / "model", "--preset", "tiny", "--out", dyn, *FP32,
            "--steps", "40", "--lr", "3e-3", "--log-every", "10", "--model-set", "unroll=2",
            "--model-set", "context=8", "--model-set", "train_crop=16")
    train = [r["loss"] for r in metrics(dyn)]
    # It learns on this world too (it has no val episode): the mean loss of the last 10 steps under
    # 0.8x that of the first 10 (measured: 0.44 -> 0.29, 0.66x).
    assert len(train) == 4 and train[-1] < 0.8 * train[0]
    wm = WorldModel.load(dyn / "model", bf16=False)
    key = reader.keys("test")[0] if reader.keys("test") else reader.keys("train")[0]
    frames, actions = reader.frames(key), reader.arrays(key)["actions"].astype(np.int64)
    # the a_prev of the first step is this world's reset cursor, learned from the recordings
    assert wm.prev_action == tuple(int(v) for v in actions[0]) == (*Minipaint(layout="column").state.cursor, 0)
    pred = wm.rollout(frames[:1], actions[None, 1:])
    assert pred.shape == (1, len(frames) - 1, 224, 224, 3) and pred.dtype == np.uint8
    assert np.array_equal(wm.reset(frames[0]), wm.decode(wm.encode(frames[:1]))[0])
