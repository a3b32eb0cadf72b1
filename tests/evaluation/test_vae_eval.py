"""`infinipaint eval vae` end to end on a tiny VAE and a small dataset."""

import json

import pytest
import torch
from PIL import Image

from infinipaint.models import vae as vae_files
from infinipaint.models.vae import VAE, VAE_PRESETS

from ..conftest import run_cli


@pytest.mark.slow
def test_eval_vae_writes_metrics_and_grid(small_dataset, tmp_path):
    torch.manual_seed(0)
    vae_files.save(VAE(VAE_PRESETS["tiny"]), tmp_path / "vae")
    out = tmp_path / "eval"
    proc = run_cli("eval", "vae", "--model", tmp_path / "vae", "--data", small_dataset, "--out", out, "--frames", "40")
    assert "PSNR mean" in proc.stdout
    m = json.loads((out / "metrics.json").read_text())
    for key in ("psnr_mean", "psnr_p5", "psnr_min", "ssim_mean", "ssim_p5", "ssim_min"):
        assert isinstance(m[key], float)
    assert m["psnr_min"] <= m["psnr_p5"] <= m["psnr_mean"] and m["ssim_min"] <= m["ssim_p5"] <= m["ssim_mean"] < 1
    assert m["frames"] == 40 and set(m["regions"]) == {"canvas", "toolbar"}
    assert sum(b["frames"] for b in m["by_density"]) == 40
    lc = m["latent_change"]
    assert lc["hover"]["pairs"] > 0 and lc["hover"]["mean_share"] == 0.0  # a hover never changes the frame
    assert lc["stroke"]["pairs"] > 0 and lc["stroke"]["mean_share"] > 0.0
    assert Image.open(out / "grid.png").size == (3 * 224, 8 * 224)


@pytest.mark.slow
def test_eval_vae_refuses_bad_inputs(small_dataset, tmp_path):
    proc = run_cli("eval", "vae", "--model", tmp_path / "nothing", "--data", small_dataset, check=False)
    assert proc.returncode == 2 and "vae.json" in proc.stderr and "Traceback" not in proc.stderr
