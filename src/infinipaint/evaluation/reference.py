"""A quality fingerprint of a world model, kept beside its weights and checked by the test suite.

    infinipaint reference --model weights/cpu --write     # writes weights/cpu/reference.json
    infinipaint reference --model weights/cpu             # compares a fresh rollout with it

    from infinipaint.evaluation.reference import reference_scores, compare
    problems = compare(reference_scores("weights/cpu"), json.load(open("weights/cpu/reference.json")))

One fixed recorded agent episode (`REFERENCE_EPISODE`, default layout, `REFERENCE_STEPS` steps of
the default episode config) is replayed through Minipaint and the world model, in fp32 (the same
numbers on every CPU, bar rounding), and the per-step SSIM and exact-pixel share are recorded. A
later build of the same weights must reproduce them within `TOLERANCE`: a change that degrades
the model's rollouts (an encoding, a window, a decode path) fails the test instead of passing
unnoticed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

REFERENCE_EPISODE = (20261201, 0)  # (seed, index) of the agent episode
REFERENCE_STEPS = 150
FILE = "reference.json"
# Allowed drift against the recorded figures: the mean over the episode and any single step.
TOLERANCE = {"mean": 0.01, "step": 0.05}


def reference_scores(model_dir: str | Path, steps: int = REFERENCE_STEPS) -> dict[str, Any]:
    """Per-step SSIM and exact share of the model on the reference episode (fp32, one batch)."""
    import torch

    from infinipaint.data.agents import EpisodeConfig, record_episode
    from infinipaint.models.world_model import WorldModel

    from .scoring import exact_share, frame_scores

    seed, index = REFERENCE_EPISODE
    ep = record_episode(seed, index, EpisodeConfig(min_steps=steps, max_steps=steps))
    wm = WorldModel.load(model_dir, bf16=False)
    with torch.no_grad():
        pred = wm.rollout(ep.frames[:1], ep.actions[None, 1 : steps + 1].astype(np.int64))[0]
    truth = ep.frames[1 : steps + 1]
    ssim = frame_scores(pred, truth, regions=False)["ssim"]
    return {"episode": list(REFERENCE_EPISODE), "steps": steps, "precision": "fp32",
            "ssim": [round(float(v), 5) for v in ssim],
            "exact_share": [round(float(v), 5) for v in exact_share(pred, truth)]}


def compare(current: dict[str, Any], saved: dict[str, Any]) -> list[str]:
    """What differs beyond `TOLERANCE` between a fresh rollout and the recorded one (empty: none)."""
    if (current["episode"], current["steps"]) != (saved["episode"], saved["steps"]):
        return [f"the reference was recorded on episode {saved['episode']} for {saved['steps']} steps"]
    problems = []
    for key in ("ssim", "exact_share"):
        a, b = np.asarray(current[key]), np.asarray(saved[key])
        if abs(a.mean() - b.mean()) > TOLERANCE["mean"]:
            problems.append(f"mean {key} {a.mean():.4f}, recorded {b.mean():.4f}")
        worst = int(np.argmax(np.abs(a - b)))
        if abs(a[worst] - b[worst]) > TOLERANCE["step"]:
            problems.append(f"{key} at step {worst + 1}: {a[worst]:.4f}, recorded {b[worst]:.4f}")
    return problems


def write_reference(model_dir: str | Path, steps: int = REFERENCE_STEPS) -> Path:
    path = Path(model_dir) / FILE
    scores = reference_scores(model_dir, steps)
    path.write_text(json.dumps(scores, indent=1) + "\n")
    return path
