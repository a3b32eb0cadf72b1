"""`infinipaint demo`: the main job of `make demo`, headless.

    infinipaint demo --out out/demo [--model weights/cpu] [--steps 300]

Replays a held-out procedural-agent episode. With a world model (the shipped `weights/cpu` when
both networks are there, or `--model DIR`) it runs the model on the episode's steps beside the
real Minipaint and writes `session.gif` (truth | model | difference); without one it writes the
Minipaint session alone.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DEFAULT_MODEL = Path("weights/cpu")
DEMO_SEED, DEMO_EPISODE = 2026, 0  # a seed never used for training data


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run a headless session and write it as a GIF")
    p.add_argument("--out", default="out/demo", help="output directory")
    p.add_argument("--model", help="world-model directory (default: weights/cpu when complete)")
    p.add_argument("--steps", type=int, default=300, help="steps of the episode to replay")
    p.set_defaults(func=demo)


def _model_dir(arg: str | None) -> Path | None:
    if arg:
        return Path(arg)
    if (DEFAULT_MODEL / "vae.json").exists() and (DEFAULT_MODEL / "dynamics.json").exists():
        return DEFAULT_MODEL
    return None


def demo(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from infinipaint.data.agents import record_episode
    from infinipaint.metrics import frame_metrics

    from .gif import write_gif

    out = Path(args.out)
    episode = record_episode(DEMO_SEED, DEMO_EPISODE)
    truth = episode.frames[: args.steps + 1]
    actions = episode.actions[1 : args.steps + 1]
    model_dir = _model_dir(args.model)
    summary: dict = {"episode": [DEMO_SEED, DEMO_EPISODE], "steps": int(len(actions))}
    if model_dir is None:
        path = write_gif(out / "session.gif", truth, scale=2)
        print(f"no world model in {DEFAULT_MODEL} yet: wrote the Minipaint session ({len(truth)} frames) to {path}")
    else:
        from infinipaint.models.world_model import WorldModel

        wm = WorldModel.load(model_dir)
        pred = [wm.reset(truth[0])]
        for a in tqdm(actions, desc="world model", unit="step"):
            pred.append(wm.step(tuple(int(v) for v in a)))
        pred = np.stack(pred)
        diff = np.abs(truth.astype(np.int16) - pred.astype(np.int16)).astype(np.uint8)
        strip = np.concatenate([truth, pred, 255 - diff], axis=2)  # truth | model | difference
        path = write_gif(out / "session.gif", strip, scale=2)
        m = frame_metrics(truth[1:], pred[1:])
        summary.update({"model": str(model_dir), "ssim_last": float(m["ssim"][-1]),
                        "ssim_mean": float(np.mean(m["ssim"])), "psnr_mean": float(np.mean(m["psnr"]))})
        print(f"world model {model_dir}: {len(actions)} steps, mean SSIM {summary['ssim_mean']:.4f}, "
              f"final SSIM {summary['ssim_last']:.4f}; truth | model | difference written to {path}")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0
