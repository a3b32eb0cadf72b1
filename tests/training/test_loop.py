"""The shared training loop, through the real `infinipaint train` command (tiny presets)."""

import json

import numpy as np
import pytest
import torch

from infinipaint.models.checkpoint import load_weights
from infinipaint.training.config import TrainConfig
from infinipaint.training.loop import STOP_AT_STEP, STOPPED_EXIT, load_state, lr_at

from ..conftest import run_cli
from .conftest import FP32, assert_same_training, metrics


def weights(run):
    state, _ = load_weights(run / "model", "vae")
    return state


def train_vae(data, out, *extra, check=True, env=None):
    return run_cli("train", "vae", "--data", data, "--preset", "tiny", "--out", out, *FP32, *extra, check=check, env=env)


@pytest.mark.slow
def test_run_folder_and_loss_falls(small_dataset, tmp_path):
    out = tmp_path / "run"
    train_vae(small_dataset, out, "--steps", "30", "--log-every", "5", "--ckpt-every", "10")
    config = json.loads((out / "config.json").read_text())
    assert config["component"] == "vae" and config["model"]["preset"] == "tiny" and config["train"]["steps"] == 30
    train_rows = metrics(out)
    assert [r["step"] for r in train_rows] == [5, 10, 15, 20, 25, 30]
    # It learns: the mean loss of the last 5 steps is under 0.3x that of the first 5 (measured:
    # 0.98 -> 0.18), the validation loss (the same val frames each time) under 0.6x its value at
    # step 10 (0.39 -> 0.15).
    assert train_rows[-1]["loss"] < 0.3 * train_rows[0]["loss"]
    val = metrics(out, "val")
    assert [r["step"] for r in val] == [10, 20, 30] and val[-1]["loss"] < 0.6 * val[0]["loss"]
    assert list((out / "tb").iterdir()) and (out / "ckpt" / "state.pt").exists()
    info = json.loads((out / "model" / "vae.json").read_text())
    assert info["meta"]["step"] == 30 and info["config"]["preset"] == "tiny"


@pytest.mark.slow
def test_the_saved_model_computes_what_the_trained_net_does(small_dataset, tmp_path, trained_nets, capsys):
    """`model/`, loaded afresh after `train vae`, encodes and decodes exactly as the network the loop
    trained in memory (fp32, the same frames)."""
    from infinipaint.cli import main
    from infinipaint.data.storage import DatasetReader
    from infinipaint.models import vae as vae_files
    from infinipaint.models.vae import VAE

    out = tmp_path / "run"
    assert main(["train", "vae", "--data", str(small_dataset), "--preset", "tiny", "--out", str(out), *FP32,
                 "--steps", "6", "--val-every", "0"]) == 0
    capsys.readouterr()
    (net,) = trained_nets
    net.eval()
    loaded = vae_files.load(out / "model")
    reader = DatasetReader(small_dataset)
    x = vae_files.frames_to_float(reader.frames(reader.keys("val")[0])[:4])
    with torch.no_grad():
        z = net.encode(x)
        assert torch.equal(loaded.encode(x), z)
        assert torch.equal(loaded.decode(z), net.decode(z))
        torch.manual_seed(0)
        untrained = VAE(net.config).eval()
        assert not torch.equal(untrained.decode(z), net.decode(z))  # the weights compared are trained ones


@pytest.mark.slow
def test_killed_run_resumes_bitwise(small_dataset, tmp_path):
    """A run killed right after its step-6 checkpoint (the loop's testing hook), then resumed in a
    fresh process, ends as an uninterrupted run: weights, optimizer state and every logged loss."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    args = ["--steps", "12", "--ckpt-every", "3", "--val-every", "0", "--log-every", "1"]
    train_vae(small_dataset, straight, *args)
    proc = train_vae(small_dataset, killed, *args, check=False, env={STOP_AT_STEP: "6"})
    assert proc.returncode == STOPPED_EXIT, proc.stderr[-3000:]
    assert load_state(killed / "ckpt" / "state.pt")["step"] == 6
    assert [r["step"] for r in metrics(killed)] == list(range(1, 7))  # killed mid-run, nothing after step 6
    proc = train_vae(small_dataset, killed, *args, check=False)
    assert proc.returncode == 2 and "--resume" in proc.stderr  # an existing run is never overwritten
    train_vae(small_dataset, killed, "--resume")
    assert_same_training(straight, killed, "vae")


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_checkpoint(small_dataset, tmp_path):
    out = tmp_path / "run"
    proc = train_vae(small_dataset, out, "--steps", "20", "--ckpt-every", "4", check=False, env={STOP_AT_STEP: "4"})
    assert proc.returncode == STOPPED_EXIT
    state = out / "ckpt" / "state.pt"
    before = state.read_bytes()
    assert load_state(state)["step"] == 4
    proc = train_vae(small_dataset, out, "--resume", "--lr", "1e30", check=False)
    assert proc.returncode == 2
    assert "loss is" in proc.stderr and "at step" in proc.stderr and "kept" in proc.stderr
    assert state.read_bytes() == before


@pytest.mark.slow
def test_resume_refuses_foreign_state(small_dataset, tmp_path):
    out = tmp_path / "run"
    train_vae(small_dataset, out, "--steps", "2", "--ckpt-every", "1")
    state = out / "ckpt" / "state.pt"
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 1  # one flipped bit: refused by its checksum
    state.write_bytes(bytes(data))
    proc = train_vae(small_dataset, out, "--resume", "--steps", "4", check=False)
    assert proc.returncode == 2 and "checksum mismatch" in proc.stderr and "Traceback" not in proc.stderr
    state.write_bytes(b"not a checkpoint")
    proc = train_vae(small_dataset, out, "--resume", check=False)
    assert proc.returncode == 2 and "state.pt" in proc.stderr and "Traceback" not in proc.stderr
    proc = train_vae(small_dataset, tmp_path / "new", "--resume", check=False)
    assert proc.returncode == 2 and "nothing to resume" in proc.stderr
    proc = train_vae(small_dataset, tmp_path / "x", "--model-set", "bogus=1", check=False)
    assert proc.returncode == 2 and "bogus" in proc.stderr


def test_lr_schedule():
    cfg = TrainConfig(steps=100, lr=1.0, warmup=10, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0) and lr_at(100, cfg) == pytest.approx(0.1)
    assert all(lr_at(s, cfg) >= lr_at(s + 1, cfg) for s in range(10, 100))


@pytest.mark.slow
def test_init_from_trained_weights(small_dataset, tmp_path):
    train_vae(small_dataset, tmp_path / "a", "--steps", "3")
    train_vae(small_dataset, tmp_path / "b", "--init-from", tmp_path / "a" / "model", "--steps", "1",
              "--lr", "1e-12", "--warmup", "0")
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    proc = train_vae(small_dataset, tmp_path / "c", "--init-from", tmp_path / "nowhere", check=False)
    assert proc.returncode == 2 and "vae.json" in proc.stderr


def test_weighted_step_batches_follow_weights():
    from infinipaint.training.loop import StepBatches

    weights = np.zeros(10)
    weights[[2, 7]] = [1.0, 3.0]
    drawn = np.concatenate(list(StepBatches(10, 64, seed=0, start=0, stop=50, weights=weights)))
    assert set(drawn.tolist()) == {2, 7}
    assert 0.7 < (drawn == 7).mean() < 0.8
    again = np.concatenate(list(StepBatches(10, 64, seed=0, start=25, stop=50, weights=weights)))
    assert np.array_equal(again, drawn[25 * 64 :])  # resumable: step s draws the same batch
    with pytest.raises(ValueError):
        StepBatches(10, 4, 0, 0, 1, weights=np.ones(3))


@pytest.mark.slow
def test_palette_vae_finds_its_colours_and_starts_from_rgb(small_dataset, tmp_path):
    train_vae(small_dataset, tmp_path / "rgb", "--steps", "2")
    proc = train_vae(small_dataset, tmp_path / "pal", "--steps", "2", "--init-from", tmp_path / "rgb" / "model",
                     "--model-set", "output=palette")
    assert "colours found" in proc.stdout
    info = json.loads((tmp_path / "pal" / "model" / "vae.json").read_text())
    assert info["config"]["output"] == "palette" and [255, 255, 255] in info["config"]["palette"]
    train_vae(small_dataset, tmp_path / "pal", "--resume", "--steps", "3")  # the saved palette is reused
    rows = (tmp_path / "pal" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(rows[-1])["step"] == 3


@pytest.mark.slow
def test_freeze_encoder_keeps_the_latent_space(small_dataset, tmp_path):
    from infinipaint.models import vae as vae_files

    train_vae(small_dataset, tmp_path / "a", "--steps", "2")
    proc = train_vae(small_dataset, tmp_path / "x", "--freeze-encoder", check=False)
    assert proc.returncode == 2 and "--init-from" in proc.stderr
    train_vae(small_dataset, tmp_path / "b", "--steps", "3", "--init-from", tmp_path / "a" / "model",
              "--freeze-encoder", "--model-set", "output=palette", "--lr", "1e-2")
    train_vae(small_dataset, tmp_path / "b", "--resume", "--steps", "5")  # still frozen after a resume
    a, b = vae_files.load(tmp_path / "a" / "model"), vae_files.load(tmp_path / "b" / "model")
    assert vae_files.encoder_sha256(a) == vae_files.encoder_sha256(b)
    assert not torch.equal(a.decoder.conv_in.weight, b.decoder.conv_in.weight)
    assert json.loads((tmp_path / "b" / "config.json").read_text())["freeze_encoder"] is True


def test_every_train_flag_says_what_it_means():
    from dataclasses import fields

    from infinipaint.training.config import TRAIN_HELP

    assert set(TRAIN_HELP) == {f.name for f in fields(TrainConfig)}
    assert "MINUTES" in TRAIN_HELP["time_limit"]


def test_train_config_refuses_unknown_extra_settings():
    """`extra` holds only what a command reads (the --mix shares); a setting nothing reads, such as
    the step-kind `oversample` of earlier versions, is refused rather than silently ignored."""
    assert TrainConfig(extra={"mix": {"data/edge": 0.1}}).extra["mix"] == {"data/edge": 0.1}
    with pytest.raises(ValueError, match="oversample"):
        TrainConfig(extra={"oversample": {"press_": 20}})
