"""`infinipaint train dynamics` end to end (tiny presets, real dataset, real frozen VAE), continuous
and FSQ, and the two models compared by `infinipaint evaluate`."""

import json

import pytest
import torch

from infinipaint.models.checkpoint import load_weights
from infinipaint.models.world_model import WorldModel

from ..conftest import run_cli

FP32 = ["--precision", "fp32", "--channels-last", "false"]


def train(component, data, out, *extra, check=True):
    return run_cli("train", component, "--data", data, "--preset", "tiny", "--out", out, *FP32, *extra, check=check)


def val_losses(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r["split"] == "val"]


@pytest.fixture(scope="module")
def vaes(small_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("vaes")
    train("vae", small_dataset, root / "cont", "--steps", "4")
    # the FSQ VAE starts from the continuous one's weights (the mean half of its output conv)
    train("vae", small_dataset, root / "fsq", "--steps", "4", "--init-from", root / "cont" / "model",
          "--model-set", "latent=fsq")
    return {"continuous": root / "cont" / "model", "fsq": root / "fsq" / "model"}


@pytest.mark.parametrize("latent", ["continuous", "fsq"])
def test_dynamics_trains_and_loads_as_a_world_model(small_dataset, vaes, tmp_path, latent):
    run = tmp_path / "dyn"
    train("dynamics", small_dataset, run, "--vae", vaes[latent], "--steps", "40", "--lr", "3e-3",
          "--log-every", "5", "--model-set", "unroll=2")
    losses = val_losses(run)  # the same val windows every time
    assert len(losses) == 4 and losses[-1] < 0.92 * losses[0]
    config = json.loads((run / "model" / "dynamics.json").read_text())["config"]
    assert config["reset_action"] == [112, 112, 0]  # the a_prev the recordings give every first step
    assert config["head"] == ("levels" if latent == "fsq" else "delta")
    assert config["levels"] == (5 if latent == "fsq" else 0)
    wm = WorldModel.load(run / "model", bf16=False)
    frame = wm.reset(torch.zeros(224, 224, 3, dtype=torch.uint8).numpy() + 255)
    assert wm.step((100, 100, 1)).shape == frame.shape


def test_dynamics_resumes_to_the_same_weights(small_dataset, vaes, tmp_path):
    args = ["--vae", vaes["continuous"], "--steps", "8", "--ckpt-every", "2", "--val-every", "0"]
    train("dynamics", small_dataset, tmp_path / "straight", *args)
    train("dynamics", small_dataset, tmp_path / "split", *args, "--time-limit", "0.0001")
    stopped = torch.load(tmp_path / "split" / "ckpt" / "state.pt", weights_only=True)["step"]
    assert stopped < 8
    rows = [json.loads(line) for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["split"] == "val"] == [stopped]  # a stopped run validates where it stands
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
    table = (out / "compare.md").read_text()
    assert table.count("| ") > 4
    for label in {p.name for p in out.iterdir() if p.is_dir()}:
        m = json.loads((out / label / "metrics.json").read_text())
        assert len(m["ssim_mean"]) == 12


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

