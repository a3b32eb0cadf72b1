import os

# Headless pygame for every test (windows, viewer); must be set before pygame opens a display.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
# Other processes may share the 2 cores: spinning OpenMP threads then slow torch 10x.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402

SMALL_SEED = 5  # 16 episodes of this seed split 13 train / 1 val / 2 test


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory):
    """16 short episodes (20-40 steps) with every split non-empty; tests must not modify it."""
    from infinipaint.data.agents import EpisodeConfig
    from infinipaint.data.generate import generate

    out = tmp_path_factory.mktemp("small") / "ds"
    generate(out, episodes=16, seed=SMALL_SEED, workers=1, episodes_per_shard=4,
             config=EpisodeConfig(min_steps=20, max_steps=40), progress=False)
    return out


def run_cli(*args: str, check: bool = True, timeout: float = 300, env: dict[str, str] | None = None,
            ) -> subprocess.CompletedProcess:
    """Run `infinipaint ARGS` in a fresh process, as a user would (`env`: variables added to ours)."""
    proc = subprocess.run([sys.executable, "-m", "infinipaint.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"infinipaint {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc
