"""The viewer's commands: `demo` (the main job of `make demo`) and `dream` (the interactive viewer).

    infinipaint demo --out out/demo [--model weights/cpu] [--steps 300]
    infinipaint dream [--model weights/cpu] [--scale 3] [--replay FILE.json] [--headless] [--save DIR]
                      [--no-truth] [--queue 64] [--threads 1] [--fp32] [--save-frames] [--realtime]
                      [--gif-seconds 60]

`demo` replays a held-out procedural-agent episode. With a world model (the shipped `weights/cpu`
when both networks are there, or `--model DIR`) it runs the model on the episode's steps beside
the real Minipaint and writes `session.gif` (truth | model | difference); without one it writes
the Minipaint session alone.

`dream` lets a person paint inside the world model; keys, panels and the queue policy are
described in `viewer/dream.py`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from .gif import GIF_FPS, GIF_SECONDS
from .inference import QUEUE, THREADS

DEFAULT_MODEL = Path("weights/cpu")
DEMO_SEED, DEMO_EPISODE = 2026, 0  # a seed never used for training data
# oneDNN keeps the kernels it built for every input shape it has seen, up to 1,024 by default.
# The viewer decodes windows whose sides are whole tiles (`models.stepping.DECODE_TILE`): with
# weights/cpu a long session sees ~35 shapes, all of them held by a cache of 64 kernels; the cap
# bounds what another model's shapes can take.
ONEDNN_PRIMITIVE_CACHE = "64"


def session_environment() -> None:
    """Process settings of a long interactive session (a user's own settings win): passive OpenMP
    waits and a bounded oneDNN kernel cache. Call it before `import torch`: OpenMP (libgomp) reads
    OMP_WAIT_POLICY when torch loads it, oneDNN its cache capacity at the first kernel."""
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", ONEDNN_PRIMITIVE_CACHE)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run a headless session and write it as a GIF")
    p.add_argument("--out", default="out/demo", help="output directory")
    p.add_argument("--model", help="world-model directory (default: weights/cpu when complete)")
    p.add_argument("--steps", type=int, default=300, help="steps of the episode to replay")
    p.set_defaults(func=demo)

    p = sub.add_parser("dream", help="paint inside the world model in a window (or replay a file headless)")
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="world-model directory (vae.* + dynamics.*)")
    p.add_argument("--scale", type=int, default=3, help="window pixels per Minipaint pixel of the model's frame")
    p.add_argument("--replay", metavar="FILE.json", help='drive the session from {"actions": [[x, y, down], ...]}, '
                   "one raw pointer sample per 80-ms tick, instead of the mouse")
    p.add_argument("--headless", action="store_true", help="no display (SDL dummy driver), no sleeping; needs "
                   "--replay; writes screenshot.png, session.gif and actions.json to --save")
    p.add_argument("--save", default="out/dream", metavar="DIR", help="where the s key (and --headless) saves the "
                   "session")
    p.add_argument("--save-frames", action="store_true", help="also save frames.npz (uint8 pred and truth per step, "
                   "the whole session, written row by row)")
    p.add_argument("--gif-seconds", type=float, default=GIF_SECONDS, metavar="S",
                   help=f"session.gif holds the last S seconds of steps, one 80-ms frame per step (default "
                        f"{GIF_SECONDS:g}: the last {round(GIF_SECONDS * GIF_FPS)} steps; 0: the whole session, slow to "
                        "write for a long one); actions.json always holds the whole session")
    p.add_argument("--no-truth", action="store_true", help="start with the real-Minipaint panels hidden")
    p.add_argument("--queue", type=int, default=QUEUE, help="steps the inference queue holds before mouse samples "
                   "are dropped (replays wait instead)")
    p.add_argument("--threads", type=int, default=THREADS, help="torch threads of the inference thread "
                   "(0: PyTorch's default)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--fp32", action="store_true",
                   help="run the model without bf16 autocast (default: bf16 where the device has it natively)")
    p.add_argument("--realtime", action="store_true", help="with --headless: tick in real time (80-ms samples, "
                   "60 fps display) as a window would, to measure what a user sees")
    p.set_defaults(func=dream)


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
        path = write_gif(out / "session.gif", strip, scale=2, labels=("truth", "model", "difference"))
        m = frame_metrics(truth[1:], pred[1:])
        summary.update({"model": str(model_dir), "ssim_last": float(m["ssim"][-1]),
                        "ssim_mean": float(np.mean(m["ssim"])), "psnr_mean": float(np.mean(m["psnr"]))})
        print(f"world model {model_dir}: {len(actions)} steps, mean SSIM {summary['ssim_mean']:.4f}, "
              f"final SSIM {summary['ssim_last']:.4f}; truth | model | difference written to {path}")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


def dream(args: argparse.Namespace) -> int:
    import os

    from infinipaint.errors import CheckpointError, CommandError

    if args.headless and not args.replay:
        raise CommandError("--headless needs --replay FILE.json (there is no mouse without a display)")
    if not 1 <= args.scale <= 8:
        raise CommandError(f"--scale must be 1..8, got {args.scale}")
    if not (math.isfinite(args.gif_seconds) and args.gif_seconds >= 0):
        raise CommandError(f"--gif-seconds must be a finite number >= 0 (0: the whole session), got {args.gif_seconds}")
    if args.headless:
        os.environ["SDL_VIDEODRIVER"] = "dummy"
    session_environment()

    from infinipaint.evaluation.evaluate import check_model_dir, pick_device
    from infinipaint.action_files import read_actions
    from infinipaint.models.world_model import WorldModel

    from .dream import MIN_QUEUE, Dream

    if args.queue < MIN_QUEUE:
        raise CommandError(f"--queue must be at least {MIN_QUEUE} (the steps one pointer sample can make)")
    replay = read_actions(args.replay) if args.replay else None
    try:
        check_model_dir(args.model)
        wm = WorldModel.load(args.model, device=pick_device(args.device), bf16=False if args.fp32 else None)
    except CheckpointError as e:
        hint = "; pass --model DIR for another model" if Path(args.model) == DEFAULT_MODEL else ""
        raise CheckpointError(f"{e}{hint}") from None
    save_dir = Path(args.save)
    viewer = Dream(wm, scale=args.scale, truth=not args.no_truth, queue=args.queue, threads=args.threads,
                   replay=replay, realtime=not args.headless or args.realtime, save_dir=save_dir,
                   save_frames=args.save_frames, mouse=not args.headless, model_dir=args.model,
                   gif_seconds=args.gif_seconds)
    try:
        viewer.run()
        if args.headless:
            viewer.save(save_dir)
    finally:
        viewer.close()
    s = viewer.summary()
    print(f"{s['steps']} steps from {s['samples']} samples ({s['dropped']} dropped, {s['missed']} missed) in {s['wall_s']:.1f} s: "
          f"UI {s['ui_fps']:.1f} fps, step latency median {s['step_ms_median']:.1f} ms, "
          f"p95 {s['step_ms_p95']:.1f} ms, p99 {s['step_ms_p99']:.1f} ms" + (f"; saved to {save_dir}" if args.headless else ""))
    if viewer.warning:
        print(f"infinipaint dream: warning: {viewer.warning}", file=sys.stderr)
    return 0
