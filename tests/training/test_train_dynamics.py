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
    train("dynamics", small_dataset, tmp_path / "split", "--vae", vaes["continuous"], "--resume", "--time-limit", "0")
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


def test_paint_head_trains_on_the_datasets_frames(small_dataset, vaes, tmp_path):
    """`--paint`: the palette comes from the VAE, the head learns from the frames, and the saved
    pair rolls out; a VAE that does not decode to a palette is refused."""
    vae = tmp_path / "vae"
    train("vae", small_dataset, vae, "--steps", "2", "--model-set", "latent=fsq", "--model-set", "output=palette",
          "--model-set", "encoder_kernel=1")
    geometry = ["--model-set", "geometry=true", "--model-set", "geometry_kind=brush"]
    run = tmp_path / "dyn"
    train("dynamics", small_dataset, run, "--vae", vae / "model", "--paint", *geometry, "--steps", "6",
          "--log-every", "2", "--model-set", "unroll=2", "--model-set", "context=16", "--model-set", "select_weight=1")
    palette = json.loads((vae / "model" / "vae.json").read_text())["config"]["palette"]
    config = json.loads((run / "model" / "dynamics.json").read_text())["config"]
    assert config["paint_palette"] == palette
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(r["paint_nll_near"] >= 0 and 0 <= r["select_wrong_size"] <= 1 for r in rows if r["split"] == "train")
    wm = WorldModel.load(run / "model", bf16=False)
    frame = wm.reset(torch.full((224, 224, 3), 255, dtype=torch.uint8).numpy())
    assert wm.step((100, 100, 1)).shape == frame.shape
    proc = train("dynamics", small_dataset, tmp_path / "rgb", "--vae", vaes["fsq"], "--paint", *geometry,
                 "--steps", "1", check=False)
    assert proc.returncode != 0 and "needs a palette VAE" in proc.stderr
    proc = train("dynamics", small_dataset, tmp_path / "nopaint", "--vae", vae / "model", "--model-set", "context=16",
                 "--model-set", "select_weight=1", "--steps", "1", check=False)
    assert proc.returncode == 2 and "needs --paint" in proc.stderr


def test_train_toolbar_adds_a_fitted_toolbar_head(small_dataset, vaes, tmp_path):
    """`train toolbar`: a copy of the world model with the toolbar table of the data's selected
    states and a fitted classifier, that loads and steps; it resumes, and refuses a VAE whose
    encoder is not cell-local."""
    vae = tmp_path / "vae"
    train("vae", small_dataset, vae, "--steps", "2", "--model-set", "latent=fsq", "--model-set", "encoder_kernel=1")
    dyn = tmp_path / "dyn"
    train("dynamics", small_dataset, dyn, "--vae", vae / "model", "--steps", "2")
    out = tmp_path / "tb"
    proc = run_cli("train", "toolbar", "--data", small_dataset, "--init-from", dyn / "model", "--out", out,
                   "--steps", "20", "--batch-size", "64", "--mix", small_dataset)
    assert "selected states never occur" in proc.stdout  # 16 short episodes do not select all 120 states
    from infinipaint.training.toolbar import dataset_transitions

    own = len(dataset_transitions(small_dataset, progress=False)["state"])  # the cache's, and again as --mix
    assert f"{2 * own:,} train transitions" in proc.stdout
    metrics = json.loads((out / "toolbar" / "metrics.json").read_text())
    assert metrics["steps"] == 20 and 0 <= metrics["val_wrong"] <= 1
    config = json.loads((out / "model" / "dynamics.json").read_text())["config"]
    assert config["toolbar_head"] is True
    wm = WorldModel.load(out / "model", bf16=False)
    head = wm.dynamics.toolbar
    assert head.ready and 0 < int(head.seen.sum()) < len(head.seen)
    before, _ = load_weights(dyn / "model", "dynamics")
    after, _ = load_weights(out / "model", "dynamics")
    assert all(torch.equal(before[k], after[k]) for k in before)  # the networks it started from are kept
    frame = wm.reset(torch.full((224, 224, 3), 255, dtype=torch.uint8).numpy())
    assert wm.step((30, 15, 1)).shape == frame.shape
    proc = run_cli("train", "toolbar", "--data", small_dataset, "--init-from", dyn / "model", "--out", out,
                   "--steps", "30", "--batch-size", "64", "--resume")
    assert "resuming the toolbar head from step 20" in proc.stdout
    assert json.loads((out / "toolbar" / "metrics.json").read_text())["steps"] == 30
    (out / "toolbar" / "state.pt").write_bytes(b"not a checkpoint")
    proc = run_cli("train", "toolbar", "--data", small_dataset, "--init-from", dyn / "model", "--out", out,
                   "--steps", "40", "--resume", check=False)
    assert proc.returncode != 0 and "not a toolbar-head checkpoint" in proc.stderr
    kernel3 = tmp_path / "dyn3"
    train("dynamics", small_dataset, kernel3, "--vae", vaes["fsq"], "--steps", "1")
    proc = run_cli("train", "toolbar", "--data", small_dataset, "--init-from", kernel3 / "model", "--out",
                   tmp_path / "tb3", check=False)
    assert proc.returncode == 2 and "cell-local encoder" in proc.stderr
