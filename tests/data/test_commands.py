"""The real commands: generate, data verify / stats / show."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from infinipaint.cli import main
from infinipaint.data.agents import PRIMITIVES, EpisodeConfig, record_episode
from infinipaint.data.storage import DatasetReader, shard_name
from infinipaint.minipaint import LAYOUT


def test_verify_stats_show(tiny_dataset, tmp_path, capsys):
    assert main(["data", "verify", str(tiny_dataset), "--quiet"]) == 0
    assert main(["data", "stats", str(tiny_dataset), "--json"]) == 0
    st = json.loads(capsys.readouterr().out.split("OK\n", 1)[1])
    assert st["episodes"] == 12 and st["frames"] == sum(st["episode_lengths"]) + 12
    assert set(st["episode_checksums"]) == {f"7:{i}" for i in range(12)}
    assert sum(st["kinds"].values()) == st["steps"] == sum(st["episode_lengths"])
    assert st["step_length_hist"][">12"] <= st["kinds"]["draw"] + st["kinds"]["erase"]  # only presses jump
    assert main(["data", "stats", str(tiny_dataset)]) == 0
    assert "steps per kind" in capsys.readouterr().out
    gif = tmp_path / "ep.gif"
    assert main(["data", "show", str(tiny_dataset), "--episode", "2", "--out", str(gif), "--frames", "10"]) == 0
    im = Image.open(gif)
    assert im.n_frames == 10 and im.size == (448, 448)
    assert main(["data", "show", str(tiny_dataset), "--episode", "99", "--out", str(gif)]) == 2


def test_verify_fails_naming_the_file(tiny_dataset, tmp_path, capsys):
    d = tmp_path / "d"
    shutil.copytree(tiny_dataset, d)
    path = d / shard_name(3)
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 1
    path.write_bytes(bytes(data))
    assert main(["data", "verify", str(d), "--quiet"]) == 1
    assert str(path) in capsys.readouterr().err
    (d / "manifest.json").write_text("[]")
    assert main(["data", "stats", str(d)]) == 2
    assert "manifest" in capsys.readouterr().err


@pytest.mark.slow
def test_fifty_episodes_cover_every_primitive_and_control(tmp_path, capsys):
    out = tmp_path / "fifty"
    assert main(["generate", "--out", str(out), "--episodes", "50", "--workers", "2", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["data", "stats", str(out), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert all(500 <= n <= 1000 for n in st["episode_lengths"])
    for p in PRIMITIVES:
        assert st["activities"][p] > 0, p
    for c in LAYOUT.controls:
        assert st["kinds"][f"press_{c}"] > 0, c
    for k in ("draw", "erase", "slider_drag", "hover", "idle", "dead_click"):
        assert st["kinds"][k] > 0, k
    for a in ("tool_switch", "color_pick", "slider_press", "slider_drag", "dead_click", "hover"):
        assert st["activities"][a] > 0, a
    assert st["pause_samples"] > 0
    assert st["kinds"]["erase"] > 0.05 * st["steps"]  # heavy erasing
    dens = st["density_final_quantiles"]
    assert dens["0.1"] < 0.15 and dens["1.0"] > 0.5  # near-empty to crowded canvases


def test_generate_on_the_column_layout_end_to_end(tmp_path, capsys):
    out = tmp_path / "column"
    args = ["generate", "--out", str(out), "--episodes", "2", "--min-steps", "30", "--max-steps", "60", "--quiet"]
    assert main([*args, "--layout", "column"]) == 0
    assert "layout column" in capsys.readouterr().out
    m = json.loads((out / "manifest.json").read_text())
    assert m["layout"] == "column" and m["n_episodes"] == 2
    assert main(["data", "verify", str(out), "--quiet"]) == 0
    ep = record_episode(0, 1, EpisodeConfig(30, 60), "column")
    np.testing.assert_array_equal(DatasetReader(out).episode(1)["frames"], ep.frames)
    capsys.readouterr()
    assert main(args) == 2  # resumed on the default layout: refused
    assert "layout='column', this run asks for 'default'" in capsys.readouterr().err
    assert main([*args, "--layout", "nope"]) == 2
    assert "unknown layout 'nope'; known: default, column" in capsys.readouterr().err
