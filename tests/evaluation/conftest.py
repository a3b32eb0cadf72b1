"""Shared fixtures: a tiny dataset with test episodes and a tiny untrained world-model directory."""

from __future__ import annotations

import pytest

from infinipaint.data.agents import EpisodeConfig
from infinipaint.data.generate import generate
from infinipaint.data.storage import split_of

SEED, EPISODES = 3, 7  # episodes 3:5 and 3:6 fall in the test split


@pytest.fixture(scope="session")
def eval_dataset(tmp_path_factory):
    """7 short episodes (20-40 steps), two of them in the test split."""
    assert [i for i in range(EPISODES) if split_of(f"{SEED}:{i}") == "test"] == [5, 6]
    out = tmp_path_factory.mktemp("evaldata") / "ds"
    generate(out, episodes=EPISODES, seed=SEED, workers=1, episodes_per_shard=4,
             config=EpisodeConfig(min_steps=20, max_steps=40), progress=False)
    return out


def make_model(directory, seed: int = 0):
    """A complete tiny world model, untrained but with a non-zero dynamics head, via the real savers."""
    import torch

    from infinipaint.models import vae as vae_files
    from infinipaint.models.checkpoint import save_weights
    from infinipaint.models.dynamics import DYNAMICS_PRESETS, LatentCNN
    from infinipaint.models.vae import VAE, VAE_PRESETS

    torch.manual_seed(seed)
    vae = VAE(VAE_PRESETS["tiny"])
    path = vae_files.save(vae, directory)
    dyn = LatentCNN(DYNAMICS_PRESETS["tiny"])
    torch.nn.init.normal_(dyn.head.weight, std=1e-3)
    import json

    sha = json.loads(path.read_text())["weights"]["sha256"]
    save_weights(dyn, directory, "dynamics", config=dyn.config.to_dict(), meta={"vae_sha256": sha})
    return directory


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("model") / "tiny")


def assert_scores_match_frames(m: dict, truth, pred) -> None:
    """The per-step means of metrics.json `m` are the scores of the frames themselves: SSIM and PSNR
    recomputed with `infinipaint.metrics`, the exact share counted pixel by pixel. truth, pred:
    uint8 (E, T, 224, 224, 3), every episode alive at every one of the T steps."""
    import numpy as np

    from infinipaint.evaluation.scoring import EXACT_TOL
    from infinipaint.metrics import frame_metrics

    e, t = truth.shape[:2]
    assert pred.shape == truth.shape and m["steps"] == list(range(1, t + 1))
    scores = frame_metrics(pred.reshape(e * t, *pred.shape[2:]), truth.reshape(e * t, *truth.shape[2:]))
    ssim, psnr = scores["ssim"].reshape(e, t), scores["psnr"].reshape(e, t)
    diff = np.abs(pred.astype(np.int16) - truth.astype(np.int16)).max(axis=-1)  # (E, T, 224, 224)
    exact = (diff <= EXACT_TOL).mean(axis=(-2, -1))
    np.testing.assert_allclose(m["ssim_mean"], ssim.mean(axis=0), rtol=0, atol=1e-6)
    np.testing.assert_allclose(m["ssim_std"], ssim.std(axis=0), rtol=0, atol=1e-6)
    np.testing.assert_allclose(m["psnr_mean"], psnr.mean(axis=0), rtol=0, atol=1e-4)
    np.testing.assert_allclose(m["exact_share"], exact.mean(axis=0), rtol=0, atol=1e-9)


def comparison_table(path) -> tuple[list[str], dict[str, list[str]]]:
    """compare.md as (the run labels of its header, {row name: one cell per run})."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("| ")]
    cells = [[c.strip() for c in line.strip()[1:-1].split("|")] for line in lines]
    assert cells[0][:3] == ["what", "write-up", "our target"]
    assert all(len(row) == len(cells[0]) for row in cells)
    return cells[0][3:], {row[0]: row[3:] for row in cells[1:]}


def report_numbers(m: dict) -> dict[str, list[tuple[float | None, int]]]:
    """What each row of the comparison table says of a run, read from its metrics.json: the values
    in the order they are printed, each with the decimals it is printed with (None: "n/a";
    responses and shares in per cent)."""
    def at(step):  # the mean SSIM at a step and the episodes it averages ("(n=...)")
        if step > len(m["steps"]):
            return [(None, 3)]
        return [(m["ssim_mean"][step - 1], 3), (m.get("episodes_per_step", [1] * len(m["steps"]))[step - 1], 0)]

    def pct(v):
        return None if v is None else 100 * v

    def resp(control, phase):
        return pct(m["responses"].get(control, {}).get(phase, {}).get("value"))

    onset = ([(m["onset_095_mean"], 0), (m["onset_095_std"], 0)] if m["onset_095_mean"] is not None
             else [(None, 0)])
    return {
        "step-1 SSIM / PSNR": [(m["ssim_mean"][0], 3), (m["psnr_mean"][0], 1)],
        **{f"mean SSIM at step {s}": at(s) for s in (150, 500, 800, 1000)},
        "pen-click response, late phase": [(resp("pen", "late"), 1)],
        "first step below SSIM 0.95": [*onset, (m["onset_095_never"], 0)],
        "tool-click response, mid phase": [(resp("tool", "mid"), 1)],
        "eraser-click response, early → late": [(resp("eraser", "early"), 1), (resp("eraser", "late"), 1)],
        "eraser L1, early / mid / late": [(m["eraser_l1"][p]["value"], 1) for p in ("early", "mid", "late")],
        "empty pen strokes, late phase": [(pct(m["empty_pen_strokes"]["late"]["value"]), 1)],
        "toolbar / canvas SSIM, mid phase": [(m["regions"]["toolbar"]["mid"], 3), (m["regions"]["canvas"]["mid"], 3)],
        "toolbar slips (steps where the toolbar goes wrong)":
            [(sum(p["slips"] for p in m["toolbar_slips"]["phases"].values()), 0)],
    }


def assert_comparison_report(path, runs: list[tuple[str, dict]]) -> None:
    """compare.md has one column per (label, metrics.json) of `runs`, in that order, and every cell
    of a column says what that run's metrics say (to the decimals printed)."""
    import re

    labels, rows = comparison_table(path)
    assert labels == [label for label, _ in runs]
    for i, (label, m) in enumerate(runs):
        expected = report_numbers(m)
        assert set(rows) == set(expected)
        for what, values in expected.items():
            tokens = re.findall(r"n/a|-?\d+(?:\.\d+)?", rows[what][i])
            assert len(tokens) == len(values), (label, what, rows[what][i])
            for token, (value, decimals) in zip(tokens, values):
                if value is None:
                    assert token == "n/a", (label, what, rows[what][i])
                else:
                    assert token != "n/a" and abs(float(token) - value) <= 0.5 * 10**-decimals + 1e-9, \
                        (label, what, rows[what][i], value)
