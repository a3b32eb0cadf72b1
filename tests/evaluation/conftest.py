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
