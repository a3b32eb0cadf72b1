"""Are an evaluation's toolbar slips the model's own errors, or drift? Each slip step is replayed
once from the TRUE frame before it: a slip that recurs is the model misreading the action there.
For dead clicks, the clicks a few pixels up and down are tried too (where the model's control
boundary lies).

    .venv/bin/python scripts/teacher_forced_slips.py --model weights/cpu --metrics docs/record/2026-11-26-fsq-context-502min-unroll12-eval-long/cpu/metrics.json
"""
import argparse
import json

import torch

from infinipaint.evaluation.evaluate import dataset_episodes
from infinipaint.evaluation.scoring import read_toolbar
from infinipaint.models.encoding import drag_origins
from infinipaint.models.world_model import WorldModel


def one_step(wm: WorldModel, frame, prev: tuple, action: tuple, origin: tuple = (-1, -1)) -> tuple:
    """The toolbar after one step from a true frame; `origin`: the drag origin at `prev`."""
    wm.reset(frame)
    wm.prev_action, wm.origin = prev, torch.tensor([origin])
    return read_toolbar(wm.step(action)[None])[0][0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="weights/cpu")
    p.add_argument("--metrics", required=True, help="metrics.json of an `infinipaint evaluate` run")
    p.add_argument("--data", default="data/eval-long")
    p.add_argument("--split", default="all")
    args = p.parse_args()
    per_episode = json.load(open(args.metrics))["toolbar_slips"]["per_episode"]
    eps = dataset_episodes(args.data, len(per_episode), args.split)
    wm = WorldModel.load(args.model)
    for e, slips in enumerate(per_episode):
        for slip in slips:
            s, a = slip["step"], [tuple(int(v) for v in row) for row in eps.actions[e]]
            before, after = eps.truth(s - 1, [e])[0], eps.truth(s, [e])[0]
            truth = read_toolbar(after[None])[0][0]
            origin = tuple(int(v) for v in drag_origins(eps.actions[e])[s - 1])
            pred = one_step(wm, before, a[s - 1], a[s], origin)
            verdict = "model error" if pred != truth else "drift (right from the true frame)"
            print(f"episode {e} step {s} {slip['kind']} {a[s - 1]} -> {a[s]}: truth {truth}, "
                  f"from the true frame {pred}: {verdict}")
            if slip["kind"] == "dead_click":
                x, y, _ = a[s]
                for yy in range(max(0, y - 4), min(223, y + 4) + 1):
                    got = one_step(wm, before, (x, yy, 0), (x, yy, 1))
                    print(f"    click ({x}, {yy}): {got}")


if __name__ == "__main__":
    main()
