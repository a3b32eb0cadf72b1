"""`infinipaint generate` and `infinipaint data verify|stats|show`.

    infinipaint generate --out data/cpu --episodes 300 --workers 2 --seed 0
    infinipaint generate --out data/column --episodes 300 --layout column   # another Minipaint layout
    infinipaint data verify data/cpu              # exit 1 (naming the file) on any problem
    infinipaint data stats data/cpu [--json]
    infinipaint data show data/cpu --episode 3 --out ep3.gif [--start 0 --frames 300]

`generate` is resumable: run the same command again after a crash (or with a larger --episodes)
and finished shards are kept, the rest regenerated; the result is identical to one clean run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    g = subparsers.add_parser("generate", help="record procedural episodes into a sharded dataset")
    g.add_argument("--out", required=True, type=Path, help="dataset directory (created; resumed if present)")
    g.add_argument("--episodes", required=True, type=int, help="number of episodes (indices 0..N-1)")
    g.add_argument("--workers", type=int, default=1, help="worker processes (the result does not depend on it)")
    g.add_argument("--seed", type=int, default=0, help="global seed; episode i is a function of (seed, i)")
    g.add_argument("--episodes-per-shard", type=int, default=None,
                   help="episodes per shard file (default 16; fixed by the first run)")
    g.add_argument("--min-steps", type=int, default=None, help="shortest episode in steps (default 500)")
    g.add_argument("--max-steps", type=int, default=None, help="longest episode in steps (default 1000)")
    g.add_argument("--edge-work", type=float, default=0.0,
                   help="weight of clicks and slider drags just outside a control's edge among the UI "
                        "activities (colour picks: 0.4; default 0: none, the episodes of earlier versions)")
    g.add_argument("--drag-work", type=float, default=0.0,
                   help="weight of drags that begin on a control and end anywhere, among the UI activities "
                        "(colour picks: 0.4; default 0: none, the episodes of earlier versions)")
    g.add_argument("--layout", default="default",
                   help="Minipaint layout by name (a key of minipaint.LAYOUTS); recorded with the dataset")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    g.set_defaults(func=cmd_generate)

    d = subparsers.add_parser("data", help="inspect a dataset: verify, stats, show")
    dsub = d.add_subparsers(dest="data_command", required=True)
    v = dsub.add_parser("verify", help="decode everything and check every checksum")
    v.add_argument("dir", type=Path)
    v.add_argument("--quiet", action="store_true")
    v.set_defaults(func=cmd_verify)
    s = dsub.add_parser("stats", help="step kinds, canvas density, step lengths")
    s.add_argument("dir", type=Path)
    s.add_argument("--json", action="store_true", help="print machine-readable JSON instead of tables")
    s.set_defaults(func=cmd_stats)
    sh = dsub.add_parser("show", help="write an episode as a GIF with the cursor overlaid")
    sh.add_argument("dir", type=Path)
    sh.add_argument("--episode", required=True, help="episode index (or key 'seed:index')")
    sh.add_argument("--out", required=True, type=Path, help="output .gif")
    sh.add_argument("--start", type=int, default=0, help="first frame")
    sh.add_argument("--frames", type=int, default=None, help="number of frames (default: all)")
    sh.add_argument("--scale", type=int, default=2, help="pixel upscaling")
    sh.set_defaults(func=cmd_show)


def cmd_generate(args: argparse.Namespace) -> int:
    import time

    from infinipaint.data.agents import EpisodeConfig
    from infinipaint.data.generate import generate
    from infinipaint.errors import CommandError

    default = EpisodeConfig()
    try:
        config = EpisodeConfig(args.min_steps or default.min_steps, args.max_steps or default.max_steps,
                               args.edge_work, args.drag_work)
    except ValueError as e:
        raise CommandError(str(e)) from None
    t0 = time.perf_counter()
    m = generate(args.out, args.episodes, seed=args.seed, workers=args.workers,
                 episodes_per_shard=args.episodes_per_shard, config=config, progress=not args.quiet,
                 layout=args.layout)
    dt = time.perf_counter() - t0
    size = sum(s["bytes"] for s in m["shards"])
    print(f"{args.out}: layout {args.layout}, {m['n_episodes']} episodes, {m['n_frames']} frames, "
          f"{len(m['shards'])} shards, "
          f"{size / 1e6:.1f} MB ({size / m['n_frames']:.0f} B/frame); "
          f"splits {', '.join(f'{k} {len(v)}' for k, v in m['splits'].items())}; {dt:.1f} s")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from infinipaint.data.storage import verify

    problems = verify(args.dir, progress=not args.quiet)
    for p in problems:
        print(f"infinipaint data verify: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"{args.dir}: OK")
    return 0


LENGTH_BINS = (0, 4, 6, 8, 10, 12)  # step-length histogram edges (px); > 12 only for presses
DENSITY_BINS = tuple(i / 10 for i in range(11))


def compute_stats(root: Path) -> dict[str, Any]:
    import numpy as np

    from infinipaint.data.agents import ACTIVITIES, KINDS
    from infinipaint.data.storage import DatasetReader, iter_arrays

    reader = DatasetReader(root)
    m = reader.manifest
    kinds: Counter = Counter()
    acts: Counter = Counter()
    lengths = []
    final_density, densities = [], []
    for e, a in iter_arrays(reader, progress=m["n_episodes"] > 50):
        kinds.update(KINDS[k] for k in a["kinds"][1:])
        acts.update(ACTIVITIES[k] for k in a["activities"][1:])
        xy = a["actions"][1:, :2].astype(np.float64)
        lengths.append(np.hypot(*np.diff(xy, axis=0).T))
        final_density.append(float(a["density"][-1]))
        densities.append(a["density"])
    steps = int(sum(kinds.values()))
    lengths = np.concatenate(lengths) if lengths else np.zeros(0)
    edges = [-0.5, *[b + 1e-9 for b in LENGTH_BINS], np.inf]
    lhist, _ = np.histogram(lengths, bins=edges)
    labels = ["0", *[f"({a},{b}]" for a, b in zip(LENGTH_BINS, LENGTH_BINS[1:])], f">{LENGTH_BINS[-1]}"]
    dens = np.concatenate(densities) if densities else np.zeros(0)
    dhist, _ = np.histogram(dens, bins=DENSITY_BINS)
    fhist, _ = np.histogram(final_density, bins=DENSITY_BINS)
    return {
        "episodes": m["n_episodes"],
        "frames": m["n_frames"],
        "steps": steps,
        "bytes": sum(s["bytes"] for s in m["shards"]),
        "splits": {k: len(v) for k, v in m["splits"].items()},
        "styles": dict(Counter(e["style"] for e in m["episodes"])),
        "kinds": {k: kinds.get(k, 0) for k in KINDS[1:]},
        "activities": {k: acts.get(k, 0) for k in ACTIVITIES[1:] if k != "pause"},
        "raw_samples": sum(e["raw_samples"] for e in m["episodes"]),
        "pause_samples": sum(e["pause_samples"] for e in m["episodes"]),
        "step_length_hist": dict(zip(labels, map(int, lhist))),
        "density_hist_frames": {f"[{a:.1f},{b:.1f})": int(c) for a, b, c in zip(DENSITY_BINS, DENSITY_BINS[1:], dhist)},
        "density_hist_final": {f"[{a:.1f},{b:.1f})": int(c) for a, b, c in zip(DENSITY_BINS, DENSITY_BINS[1:], fhist)},
        "density_final_quantiles": {q: float(np.quantile(final_density, float(q))) for q in ("0.1", "0.5", "0.9", "1.0")},
        "episode_lengths": [e["steps"] for e in m["episodes"]],
        "episode_checksums": {e["key"]: e["checksum"] for e in m["episodes"]},
    }


def _table(title: str, counts: dict[str, int], total: int | None = None) -> str:
    total = total or max(1, sum(counts.values()))
    rows = [f"{title}"] + [f"  {k:<22}{v:>10}  {100 * v / total:6.2f} %" for k, v in counts.items()]
    return "\n".join(rows)


def cmd_stats(args: argparse.Namespace) -> int:
    st = compute_stats(args.dir)
    if args.json:
        print(json.dumps(st, indent=1))
        return 0
    print(f"{args.dir}: {st['episodes']} episodes, {st['frames']} frames, {st['steps']} steps, "
          f"{st['bytes'] / st['frames']:.0f} B/frame; splits {st['splits']}; styles {st['styles']}")
    print(f"raw pointer samples {st['raw_samples']} (pauses {st['pause_samples']}, dropped by the dead zone)")
    print(_table("steps per kind", st["kinds"]))
    print(_table("steps per agent activity", st["activities"]))
    print(_table("step length (px)", st["step_length_hist"]))
    print(_table("canvas density, all frames", st["density_hist_frames"]))
    print(_table("canvas density, final frame of each episode", st["density_hist_final"]))
    print("final density quantiles: " + ", ".join(f"q{k}={v:.3f}" for k, v in st["density_final_quantiles"].items()))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from infinipaint.data.storage import DatasetReader
    from infinipaint.errors import CommandError
    from infinipaint.models.encoding import encode_action

    reader = DatasetReader(args.dir)
    episode = args.episode if ":" in args.episode else int(args.episode) if args.episode.isdigit() else None
    if episode is None:
        raise CommandError(f"--episode must be an index or a key 'seed:index', got {args.episode!r}")
    try:
        key = reader.key(episode)
    except KeyError as e:
        raise CommandError(str(e.args[0])) from None
    steps = reader.steps(key)
    stop = steps + 1 if args.frames is None else min(steps + 1, args.start + args.frames)
    if not 0 <= args.start < stop:
        raise CommandError(f"--start must be in 0..{steps}")
    actions = reader.arrays(key)["actions"]
    images = []
    for t in range(args.start, stop):
        frame = reader.frame(key, t).astype(np.float32)
        x, y, down = (int(v) for v in actions[t])
        heat = np.kron(encode_action(x, y, down)[..., 0], np.ones((4, 4), np.float32))[..., None]  # (224, 224, 1)
        tint = np.array([0, 200, 0] if down else [230, 0, 0], np.float32)
        out = frame * (1 - 0.7 * heat) + tint * 0.7 * heat
        img = Image.fromarray(out.clip(0, 255).astype(np.uint8))
        if args.scale > 1:
            img = img.resize((img.width * args.scale, img.height * args.scale), Image.NEAREST)
        images.append(img)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(args.out, save_all=True, append_images=images[1:], duration=80, loop=0)
    print(f"{args.out}: episode {key}, frames {args.start}..{stop - 1}")
    return 0
