"""Which cells a draw step gets wrong: each draw step of the first episodes is predicted once from the
true frame before it (as `error_budget.py` does), and every latent cell (4×4 pixels) near the stroke
is sorted by how many of its 16 pixels the step really changed; for each group, the share of cells
whose prediction shows a visible error (a pixel off by more than VISIBLE_DELTA against the true
frame as the VAE renders it). Cells the step covers whole or not at all are easy; cells it covers
in part are where the codes go wrong.

    .venv/bin/python scripts/cell_errors.py --model weights/cpu --keep-margin 1.5
"""
import argparse

import numpy as np
import torch
import torch.nn.functional as F

from infinipaint.evaluation.evaluate import dataset_episodes
from infinipaint.evaluation.scoring import VISIBLE_DELTA
from infinipaint.models.world_model import WorldModel
from infinipaint.models.encoding import drag_origins

GROUPS = {"0 (next to change)": (0, 0), "1-4": (1, 4), "5-8": (5, 8), "9-12": (9, 12), "13-15": (13, 15), "16": (16, 16)}


def per_cell(mask: np.ndarray) -> np.ndarray:
    """(B, 224, 224) bool -> (B, 56, 56): how many of each cell's 16 pixels are set."""
    return mask.reshape(len(mask), 56, 4, 56, 4).sum(axis=(2, 4))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="weights/cpu")
    p.add_argument("--data", default="data/eval-long")
    p.add_argument("--episodes", type=int, default=4)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--keep-margin", type=float, default=None)
    args = p.parse_args()
    eps = dataset_episodes(args.data, args.episodes, "all", max_steps=args.steps)
    wm = WorldModel.load(args.model, keep_margin=args.keep_margin)
    counts = {name: [0, 0] for name in GROUPS}  # cells, cells with a visible error
    for e in range(len(eps.keys)):
        actions = torch.from_numpy(eps.actions[e])
        origins = torch.from_numpy(drag_origins(eps.actions[e]))  # where each step's drag began
        n = len(actions) - 1
        for s in range(0, n, 50):
            t = np.arange(s, min(s + 50, n) + 1)
            truth = np.stack([eps.truth(int(i), [e])[0] for i in t])
            draw = np.array([eps.kinds[e][i] == "draw" for i in t[1:]])
            z = wm.encode(truth)
            seen = wm.decode(z)
            pred = wm.decode(wm.advance(z[:-1], actions[t[:-1]], actions[t[1:]], origins[t[1:]]))
            changed = per_cell(np.abs(truth[1:].astype(int) - truth[:-1].astype(int)).max(-1) > 0)[draw]
            wrong = per_cell(np.abs(pred.astype(int) - seen[1:].astype(int)).max(-1) > VISIBLE_DELTA)[draw] > 0
            touched = torch.from_numpy((changed > 0).astype(np.float32))[:, None]
            near = F.max_pool2d(touched, 3, 1, 1)[:, 0].numpy() > 0
            for name, (lo, hi) in GROUPS.items():
                group = (changed >= lo) & (changed <= hi) & (near if hi == 0 else True)
                counts[name][0] += int(group.sum())
                counts[name][1] += int((wrong & group).sum())
        print(f"episode {e} done", flush=True)
    print(f"{args.model}: draw steps, cells by how many of their pixels the step changed -> share with a visible error")
    for name, (cells, wrong) in counts.items():
        print(f"  {name:20s} {cells:7d} cells  {100 * wrong / max(cells, 1):5.2f} %")


if __name__ == "__main__":
    main()
