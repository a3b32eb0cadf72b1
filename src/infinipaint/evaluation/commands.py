"""Evaluation commands: `bench` (and, as the stages land, `eval vae`, `evaluate`, `rollout`).

    infinipaint bench minipaint            # Minipaint step time, median and p95
    infinipaint bench --out out/bench      # everything available, also written as bench.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="time Minipaint and the world model")
    p.add_argument("target", nargs="?", default="all", choices=["all", "minipaint"], help="what to time")
    p.add_argument("--episodes", type=int, default=4, help="agent episodes in the Minipaint action stream")
    p.add_argument("--out", help="also write DIR/bench.json")
    p.add_argument("--json", action="store_true", help="print JSON only")
    p.set_defaults(func=bench)


def bench(args: argparse.Namespace) -> int:
    from .bench import bench_minipaint

    results = {"minipaint_step": bench_minipaint(episodes=args.episodes)}
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "bench.json").write_text(json.dumps(results, indent=2) + "\n")
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        m = results["minipaint_step"]
        print(f"Minipaint step (frame copy included, {m['n']} steps of agent episodes): "
              f"median {m['median_ms']:.3f} ms, p95 {m['p95_ms']:.3f} ms, mean {m['mean_ms']:.3f} ms")
    return 0
