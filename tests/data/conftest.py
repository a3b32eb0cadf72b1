import pytest

from infinipaint.data.agents import EpisodeConfig
from infinipaint.data.generate import generate

TINY = EpisodeConfig(min_steps=20, max_steps=40)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """12 short episodes, 3 per shard (session-wide; tests must not modify it)."""
    out = tmp_path_factory.mktemp("tiny") / "ds"
    generate(out, episodes=12, seed=7, workers=1, episodes_per_shard=3, config=TINY, progress=False)
    return out
