"""The paint head's pixel errors, teacher-forced: replay episodes in Minipaint, run the dynamics on
each true frame's latent, recolour the pixels the head paints and count the canvas pixels whose
colour then differs from Minipaint's next frame: missed (the step changed them) and stray (it did
not), by the pixel's footprint value and the true brush size. A footprint value f is painted by
brush sizes s >= 11 - 10 f, so a miss at (0.8, size 3) means the head took the brush for size 2.

    .venv/bin/python scripts/paint_errors.py --model runs/dyn-paint4/model --episodes 4 --steps 200
"""
import argparse
from collections import Counter

import numpy as np
import torch

from infinipaint.actions import RESET_ACTION, cell_planes
from infinipaint.evaluation.evaluate import dataset_episodes
from infinipaint.minipaint import Minipaint
from infinipaint.models.world_model import WorldModel


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a world model whose dynamics has a paint head")
    p.add_argument("--data", default="data/eval-long")
    p.add_argument("--split", default="all")
    p.add_argument("--episodes", type=int, default=4)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    wm = WorldModel.load(args.model)
    dyn = wm.dynamics
    if not dyn.config.paint_palette:
        raise SystemExit(f"{args.model}: the dynamics network has no paint head")
    rows = dyn.config.context_rows
    eps = dataset_episodes(args.data, args.episodes, args.split, max_steps=args.steps)
    missed, stray, changed_total = Counter(), Counter(), 0
    for e in range(len(eps.keys)):
        actions = eps.actions[e]
        app = Minipaint()
        frames, sizes = [app.reset()], []
        for a in actions:
            frames.append(app.step(tuple(int(v) for v in a)))
            sizes.append(app.state.size)
        frames = np.stack(frames)
        prev = np.concatenate([[RESET_ACTION], actions[:-1]]).astype(np.int64)
        planes = dyn.action_input(torch.from_numpy(prev), torch.from_numpy(actions.astype(np.int64)))
        with torch.no_grad(), wm._autocast():
            z = wm.encode(frames[:-1])
            features = dyn.features(dyn.normalize(z), planes)
            log_paint, log_keep, colour = dyn.paint_probs(features, planes)
        old = dyn.palette_cells(torch.from_numpy(frames[:-1]))
        new = dyn.palette_cells(torch.from_numpy(frames[1:]))
        painted = log_paint - log_keep > dyn.config.paint_margin
        result = torch.where(painted, colour.argmax(dim=1, keepdim=True), old)
        changed = cell_planes(torch.from_numpy((frames[1:] != frames[:-1]).any(-1)).float()).bool()
        wrong = result != new
        wrong[:, :, :rows], changed[:, :, :rows] = False, False  # the canvas only
        changed_total += int(changed.sum())
        footprint = planes[:, -16:]
        for t in range(len(actions)):
            for counter, where in ((missed, wrong[t] & changed[t]), (stray, wrong[t] & ~changed[t])):
                counter.update((round(v, 1), sizes[t]) for v in footprint[t][where].tolist())
    print(f"{len(eps.keys)} episodes x {args.steps} steps: {changed_total} canvas pixels changed; "
          f"{sum(missed.values())} missed ({sum(missed.values()) / max(changed_total, 1):.1%}), "
          f"{sum(stray.values())} stray")
    print("missed by (footprint, true size):", missed.most_common(10))
    print("stray by (footprint, true size):", stray.most_common(10))


if __name__ == "__main__":
    main()
