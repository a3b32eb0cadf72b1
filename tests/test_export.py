"""`infinipaint export onnx` and the torch-free ONNX backend: the same frames as PyTorch."""

import json
import shutil

import numpy as np
import pytest

from infinipaint.errors import CheckpointError
from infinipaint.export import FORMAT, export_onnx
from infinipaint.onnx_backend import OnnxWorldModel, read_export

from .conftest import run_cli

WEIGHTS = "weights/cpu"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "cpu"
    info = export_onnx(WEIGHTS, out)
    return out, info


def test_a_folder_that_is_not_a_model_is_refused_clearly(tmp_path):
    with pytest.raises(CheckpointError, match="no such model directory"):
        export_onnx(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "half").mkdir()
    shutil.copy(f"{WEIGHTS}/vae.json", tmp_path / "half")
    with pytest.raises(CheckpointError, match="dynamics"):
        export_onnx(tmp_path / "half", tmp_path / "out")
    assert not (tmp_path / "out" / "model.json").exists()


def test_a_model_of_an_unknown_format_is_refused(tmp_path):
    shutil.copytree(WEIGHTS, tmp_path / "model")
    info = json.loads((tmp_path / "model" / "dynamics.json").read_text())
    (tmp_path / "model" / "dynamics.json").write_text(json.dumps({**info, "format": "another-program/3"}))
    with pytest.raises(CheckpointError, match="format"):
        export_onnx(tmp_path / "model", tmp_path / "out")


def test_an_export_is_refused_where_a_folder_is_not_one(tmp_path):
    with pytest.raises(CheckpointError, match="export it first"):
        read_export(WEIGHTS)  # a PyTorch model folder
    with pytest.raises(CheckpointError, match="no such folder"):
        read_export(tmp_path / "missing")
    (tmp_path / "model.json").write_text('{"format": "something-else"}')
    with pytest.raises(CheckpointError, match="not an Infinipaint ONNX export"):
        read_export(tmp_path)


@pytest.mark.slow
def test_the_export_describes_its_graphs_and_its_source(exported):
    out, info = exported
    assert json.loads((out / "model.json").read_text()) == info
    assert info["format"] == FORMAT and info["window"] == 32 and info["latent_channels"] == 16
    vae = json.loads(open(f"{WEIGHTS}/vae.json").read())
    assert info["source"]["vae_sha256"] == vae["weights"]["sha256"]
    step = info["graphs"]["step"]
    assert [i["name"] for i in step["inputs"]] == ["latent", "prev", "action", "origin"]
    assert [(o["name"], o["dtype"], o["shape"]) for o in step["outputs"]] == [
        ("next_latent", "float32", [1, 16, 56, 56]), ("next_origin", "int64", [1, 2])]
    assert info["graphs"]["decoder"]["outputs"][0]["dtype"] == "uint8"
    assert info["graphs"]["encoder"]["inputs"][0]["shape"][0] is None  # a free batch
    for name, f in info["files"].items():
        assert (out / name).stat().st_size == f["bytes"] > 100_000


@pytest.mark.slow
def test_onnx_frames_equal_pytorch_fp32(exported, small_dataset):
    from infinipaint.data.storage import DatasetReader
    from infinipaint.models.world_model import WorldModel

    reader = DatasetReader(small_dataset)
    keys = reader.keys()[:4]
    torch_wm, onnx_wm = WorldModel.load(WEIGHTS, bf16=False), OnnxWorldModel.load(exported[0])
    same, changed = [], 0
    for key in keys:
        ep = reader.episode(key)
        a = torch_wm.reset(ep["frames"][0])
        assert np.array_equal(a, onnx_wm.reset(ep["frames"][0]))
        for step in ep["actions"][1:]:
            a, b = torch_wm.step(step), onnx_wm.step(step)
            same.append((a == b).all(axis=-1).mean())
        changed += int((a != ep["frames"][0]).any())
    assert changed >= 2  # the episodes painted something: a comparison of blank frames proves little
    assert len(same) > 80 and np.mean(same) >= 0.999, (np.mean(same), np.min(same))  # measured: all identical


@pytest.mark.slow
def test_a_tampered_export_is_refused(exported, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(exported[0], copy)
    with open(copy / "step.onnx", "r+b") as f:
        f.seek(5000)
        f.write(b"\x00\x01\x02")
    with pytest.raises(CheckpointError, match="step.onnx: not the file model.json names"):
        OnnxWorldModel.load(copy)
    shutil.copy(exported[0] / "step.onnx", copy)
    data = (copy / "encoder.onnx").read_bytes()
    (copy / "encoder.onnx").write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(CheckpointError, match="encoder.onnx: not the file model.json names"):
        read_export(copy)
    shutil.copy(exported[0] / "encoder.onnx", copy)
    (copy / "decoder.onnx").unlink()
    with pytest.raises(CheckpointError, match="decoder.onnx: missing"):
        read_export(copy)


@pytest.mark.slow
def test_rollout_with_the_onnx_backend_never_imports_torch(exported, tmp_path):
    actions = tmp_path / "actions.json"
    stroke = [[60, 120, 0], [60, 120, 1]] + [[60 + 8 * i, 120 + 3 * i, 1] for i in range(1, 12)] + [[148, 153, 0]]
    actions.write_text(json.dumps({"actions": stroke}))
    code = ("import sys; from infinipaint.cli import main; "
            f"rc = main(['rollout', '--backend', 'onnx', '--model', {str(exported[0])!r}, '--actions', {str(actions)!r}, "
            f"'--out', {str(tmp_path / 'out')!r}, '--save-frames', '--quiet']); "
            "print('TORCH' if 'torch' in sys.modules else 'NO TORCH'); sys.exit(rc)")
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("NO TORCH"), proc.stdout
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["backend"] == "onnx" and len(metrics["steps"]) == len(metrics["actions"]) > 10
    frames = np.load(tmp_path / "out" / "frames.npz")
    assert frames["pred"].shape == frames["truth"].shape == (len(metrics["steps"]), 224, 224, 3)
    assert (frames["pred"][-1] != frames["pred"][0]).any()  # the stroke was drawn
    assert np.mean(metrics["exact_share"]) > 0.99


def test_the_onnx_backend_and_action_files_import_no_torch():
    import subprocess
    import sys

    code = ("import sys, infinipaint.onnx_backend, infinipaint.action_files, infinipaint.actions; "
            "print('TORCH' if 'torch' in sys.modules else 'NO TORCH')")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "NO TORCH"


def test_bad_steps_are_refused_like_the_pytorch_model():
    from infinipaint.models.stepping import check_step

    for bad in [("1", 2, 1), (1.5, 2, 1), (True, 2, 1), (np.True_, 2, 1), (1, 2), (1, 2, 3), (224, 0, 0),
                (10**400, 0, 0), iter([1, 2, 1]), np.array([1.0, 2.0, 1.0]), "abc"]:
        with pytest.raises(ValueError):
            check_step(bad, 224)
    assert check_step(np.array([1, 2, 1]), 224) == (1, 2, 1) and check_step([0, 223, 0], 224) == (0, 223, 0)


def test_an_export_refuses_to_write_into_a_foreign_folder(tmp_path):
    from infinipaint.errors import CommandError

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(CommandError, match="not a folder of an ONNX export"):
        export_onnx(WEIGHTS, tmp_path / "out")
    with pytest.raises(CommandError, match="window must be"):
        export_onnx(WEIGHTS, tmp_path / "new", window=-1)


def test_torch_only_options_are_refused_with_the_onnx_backend(tmp_path):
    proc = run_cli("rollout", "--backend", "onnx", "--model", tmp_path, "--actions", tmp_path / "a.json", "--fp32",
                   check=False)
    assert proc.returncode == 2 and "--fp32: not with --backend onnx" in proc.stderr
