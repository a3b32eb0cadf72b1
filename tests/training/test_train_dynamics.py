"""`infinipaint train dynamics` end to end (tiny presets, real dataset, real frozen VAE), continuous
and FSQ, and the two models compared by `infinipaint evaluate`."""

import json

import numpy as np
import pytest
import torch

from infinipaint.models.checkpoint import load_weights
from infinipaint.models.world_model import WorldModel
from infinipaint.training.loop import STOP_AT_STEP, STOPPED_EXIT, load_state

from ..conftest import run_cli
from ..evaluation.conftest import assert_comparison_report
from .conftest import FP32, assert_same_training, metrics

pytestmark = pytest.mark.slow  # every test here trains through the real command


def train(component, data, out, *extra, check=True, env=None):
    return run_cli("train", component, "--data", data, "--preset", "tiny", "--out", out, *FP32, *extra, check=check,
                   env=env)


def val_losses(run):
    return [r["loss"] for r in metrics(run, "val")]


@pytest.fixture(scope="module")
def vaes(small_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("vaes")
    train("vae", small_dataset, root / "cont", "--steps", "4")
    # the FSQ VAE starts from the continuous one's weights (the mean half of its output conv)
    train("vae", small_dataset, root / "fsq", "--steps", "4", "--init-from", root / "cont" / "model",
          "--model-set", "latent=fsq")
    return {"continuous": root / "cont" / "model", "fsq": root / "fsq" / "model"}


# The last of 4 validations (the same val windows each time) under `factor` x the first. Measured:
# continuous 0.268 -> 0.141 (0.53x) over 80 steps, FSQ 0.185 -> 0.142 (0.77x) over 40 (a levels
# step costs ~3x a delta step; it learns faster).
@pytest.mark.parametrize("latent, steps, factor", [("continuous", 80, 0.7), ("fsq", 40, 0.85)])
def test_dynamics_trains_and_loads_as_a_world_model(small_dataset, vaes, tmp_path, latent, steps, factor):
    run = tmp_path / "dyn"
    train("dynamics", small_dataset, run, "--vae", vaes[latent], "--steps", str(steps), "--lr", "3e-3",
          "--log-every", "5", "--val-every", str(steps // 4), "--model-set", "unroll=2")
    losses = val_losses(run)
    assert len(losses) == 4 and losses[-1] < factor * losses[0]
    config = json.loads((run / "model" / "dynamics.json").read_text())["config"]
    assert config["reset_action"] == [112, 112, 0]  # the a_prev the recordings give every first step
    assert config["head"] == ("levels" if latent == "fsq" else "delta")
    assert config["levels"] == (5 if latent == "fsq" else 0)
    wm = WorldModel.load(run / "model", bf16=False)
    frame = wm.reset(torch.zeros(224, 224, 3, dtype=torch.uint8).numpy() + 255)
    assert wm.step((100, 100, 1)).shape == frame.shape


@pytest.mark.parametrize("latent", ["continuous", "fsq"])
def test_the_saved_world_model_steps_as_the_trained_net(small_dataset, vaes, tmp_path, trained_nets, capsys, latent):
    """`model/`, loaded afresh after `train dynamics`, computes exactly what the network the loop
    trained in memory does (fp32, the same latents and actions); as a WorldModel, whose channels-last
    convolutions round differently, to float precision."""
    from infinipaint.cli import main
    from infinipaint.data.storage import DatasetReader
    from infinipaint.models.world_model import load_dynamics

    run = tmp_path / "dyn"
    assert main(["train", "dynamics", "--data", str(small_dataset), "--vae", str(vaes[latent]), "--preset", "tiny",
                 "--out", str(run), *FP32, "--steps", "6", "--lr", "3e-3", "--val-every", "0"]) == 0
    capsys.readouterr()
    (net,) = trained_nets
    net.eval()
    wm = WorldModel.load(run / "model", bf16=False)
    reader = DatasetReader(small_dataset)
    key = reader.keys("val")[0]
    actions = torch.from_numpy(reader.arrays(key)["actions"][:4].astype(np.int64))
    loaded = load_dynamics(run / "model")
    with torch.no_grad():
        z = wm.encode(reader.frames(key)[:3])  # (3, C, 56, 56)
        planes = net.action_input(actions[:3], actions[1:4])
        out = net(net.normalize(z), planes)
        assert out.abs().amax() > 0  # trained: the head is no longer the zeros it starts from
        assert torch.equal(loaded(loaded.normalize(z), planes), out)
        assert torch.equal(loaded.step(z, planes), net.step(z, planes))
        assert torch.allclose(wm.dynamics(wm.dynamics.normalize(z), planes), out, rtol=0, atol=1e-5)
        assert torch.allclose(wm.advance(z, actions[:3], actions[1:4]), net.step(z, planes), rtol=0, atol=1e-5)


def test_killed_run_resumes_bitwise(small_dataset, vaes, tmp_path):
    """Killed right after its step-4 checkpoint (the loop's testing hook), resumed in a fresh process:
    the state of an uninterrupted run, with every random draw of the dynamics loss in play
    (unrolled windows, scheduled sampling, crops around the cursor, a context, FSQ code flips)."""
    args = ["--vae", vaes["fsq"], "--steps", "8", "--ckpt-every", "2", "--val-every", "0", "--log-every", "1",
            "--model-set", "unroll=2", "--model-set", "sched_sampling=0.5", "--model-set", "train_crop=16",
            "--model-set", "context=8", "--model-set", "flip_prob=0.05"]
    train("dynamics", small_dataset, tmp_path / "straight", *args)
    proc = train("dynamics", small_dataset, tmp_path / "killed", *args, check=False, env={STOP_AT_STEP: "4"})
    assert proc.returncode == STOPPED_EXIT, proc.stderr[-3000:]
    assert load_state(tmp_path / "killed" / "ckpt" / "state.pt")["step"] == 4
    train("dynamics", small_dataset, tmp_path / "killed", "--vae", vaes["fsq"], "--resume")
    assert_same_training(tmp_path / "straight", tmp_path / "killed", "dynamics")


def test_dynamics_resumes_to_the_same_weights(small_dataset, vaes, tmp_path):
    """Stopped by its time limit (after its first step: any step takes more than 6 ms), a run
    validates and plots where it stands, and resumes to the weights of an uninterrupted run."""
    args = ["--vae", vaes["continuous"], "--steps", "8", "--ckpt-every", "2", "--val-every", "0"]
    train("dynamics", small_dataset, tmp_path / "straight", *args)
    train("dynamics", small_dataset, tmp_path / "split", *args, "--time-limit", "0.0001")
    stopped = torch.load(tmp_path / "split" / "ckpt" / "state.pt", weights_only=True)["step"]
    assert stopped < 8
    assert [r["step"] for r in metrics(tmp_path / "split", "val")] == [stopped]  # a stopped run validates where it stands
    assert (tmp_path / "split" / "curves.png").stat().st_size > 1000  # and plots its curves
    # the VAE's run folder stands for its model/
    train("dynamics", small_dataset, tmp_path / "split", "--vae", vaes["continuous"].parent, "--resume", "--time-limit", "0")
    a, _ = load_weights(tmp_path / "straight" / "model", "dynamics")
    b, _ = load_weights(tmp_path / "split" / "model", "dynamics")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_from_before_a_new_config_field_still_resumes(small_dataset, vaes, tmp_path):
    """A checkpoint written before `keep_margin` existed resumes with the field's default; one of
    another shape is still refused."""
    run = tmp_path / "old"
    args = ["--vae", vaes["fsq"], "--ckpt-every", "1", "--val-every", "0"]
    train("dynamics", small_dataset, run, *args, "--steps", "4", "--time-limit", "0.0001")
    ckpt = run / "ckpt" / "state.pt"
    for saved in (ckpt, run / "config.json"):  # as the older code wrote them
        if saved.suffix == ".pt":
            state = torch.load(saved, weights_only=True)
            del state["model_config"]["keep_margin"]
            torch.save(state, saved)
        else:
            config = json.loads(saved.read_text())
            del config["model"]["keep_margin"]
            saved.write_text(json.dumps(config))
    train("dynamics", small_dataset, run, "--vae", vaes["fsq"], "--resume", "--time-limit", "0")
    assert torch.load(ckpt, weights_only=True)["step"] == 4
    state = torch.load(ckpt, weights_only=True)
    state["model_config"]["hidden"] += 8
    torch.save(state, ckpt)
    proc = train("dynamics", small_dataset, run, "--vae", vaes["fsq"], "--resume", "--steps", "6", check=False)
    assert proc.returncode == 2 and "different model" in proc.stderr and "Traceback" not in proc.stderr


def test_init_from_weights_of_another_vae_takes_this_latents_statistics(small_dataset, vaes, tmp_path):
    """--init-from keeps the source's latent normalisation when the VAE is the same, and takes the new
    latent's own when the source was trained with another encoder (e.g. a cell-local one)."""
    args = ["--steps", "1", "--val-every", "0"]
    train("dynamics", small_dataset, tmp_path / "a", "--vae", vaes["fsq"], *args)
    other = tmp_path / "vae-local"
    train("vae", small_dataset, other, "--steps", "2", "--init-from", vaes["fsq"], "--model-set", "encoder_kernel=1")
    same = train("dynamics", small_dataset, tmp_path / "same", "--vae", vaes["fsq"], "--init-from", tmp_path / "a" / "model", *args)
    moved = train("dynamics", small_dataset, tmp_path / "moved", "--vae", other / "model",
                  "--init-from", tmp_path / "a" / "model", *args)
    assert "another VAE encoder" in moved.stdout and "another VAE encoder" not in same.stdout
    stats = {name: load_weights(tmp_path / name / "model", "dynamics")[0] for name in ("a", "same", "moved")}
    assert torch.equal(stats["same"]["z_mean"], stats["a"]["z_mean"])
    assert not torch.equal(stats["moved"]["z_mean"], stats["a"]["z_mean"])


def test_levels_head_needs_an_fsq_vae(small_dataset, vaes, tmp_path):
    proc = train("dynamics", small_dataset, tmp_path / "x", "--vae", vaes["continuous"],
                 "--model-set", "head=levels", "--model-set", "levels=5", check=False)
    assert proc.returncode == 2 and "FSQ" in proc.stderr and "Traceback" not in proc.stderr


def test_evaluate_compares_continuous_and_fsq(small_dataset, vaes, tmp_path):
    runs = {}
    for latent in ("continuous", "fsq"):
        runs[latent] = tmp_path / latent
        train("dynamics", small_dataset, runs[latent], "--vae", vaes[latent], "--steps", "3")
    out = tmp_path / "eval"
    run_cli("evaluate", "--model", runs["continuous"] / "model", "--model", runs["fsq"] / "model",
            "--data", small_dataset, "--episodes", "2", "--max-steps", "12", "--out", out, "--fp32")
    assert (out / "compare.png").stat().st_size > 0
    # Both model folders are called "model": they are told apart by their order, each evaluated on its own.
    results = [(label, json.loads((out / label / "metrics.json").read_text())) for label in ("model-1", "model-2")]
    for (_, m), latent in zip(results, ("continuous", "fsq")):
        assert m["model"]["dir"] == str(runs[latent] / "model") and len(m["ssim_mean"]) == 12
    assert results[0][1]["ssim_mean"][0] != results[1][1]["ssim_mean"][0]  # two models, two columns to tell apart
    assert_comparison_report(out / "compare.md", results)


def test_mix_trains_on_a_second_dataset_and_resumes_with_it(small_dataset, vaes, tmp_path):
    args = ["--vae", vaes["fsq"], "--steps", "4", "--ckpt-every", "2", "--val-every", "0"]
    run = tmp_path / "mix"
    proc = train("dynamics", small_dataset, run, *args, "--mix", f"{small_dataset}=0.25", "--time-limit", "0.0001")
    assert "mix: " in proc.stdout and "25%" in proc.stdout
    assert json.loads((run / "config.json").read_text())["train"]["extra"]["mix"] == {str(small_dataset): 0.25}
    proc = train("dynamics", small_dataset, run, "--vae", vaes["fsq"], "--resume")  # the saved mix
    assert "mix: " in proc.stdout
    for bad, message in [("nowhere=0.1", "no dataset directory"), (f"{small_dataset}=1.5", "0 < SHARE < 1"),
                         (f"{small_dataset}", "DIR=SHARE")]:
        proc = train("dynamics", small_dataset, tmp_path / "bad", *args, "--mix", bad, check=False)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_a_run_told_about_minipaint_is_refused_naming_the_field(small_dataset, vaes, tmp_path):
    """A run (or --init-from weights) whose config has a field of the versions that gave the network
    Minipaint's toolbar rows or brush footprint is refused with the field's name, not a traceback."""
    run = tmp_path / "old"
    train("dynamics", small_dataset, run, "--vae", vaes["fsq"], "--steps", "2", "--val-every", "0")
    config = json.loads((run / "config.json").read_text())
    config["model"]["geometry_kind"] = "brush"
    (run / "config.json").write_text(json.dumps(config))
    proc = train("dynamics", small_dataset, run, "--vae", vaes["fsq"], "--resume", check=False)
    assert proc.returncode == 2 and "'geometry_kind' no longer exists" in proc.stderr and "Traceback" not in proc.stderr
    info = json.loads((run / "model" / "dynamics.json").read_text())
    info["config"]["toolbar_head"] = True
    (run / "model" / "dynamics.json").write_text(json.dumps(info))
    proc = train("dynamics", small_dataset, tmp_path / "new", "--vae", vaes["fsq"], "--init-from", run / "model",
                 check=False)
    assert proc.returncode == 2 and "'toolbar_head' no longer exists" in proc.stderr

