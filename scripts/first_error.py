"""Where each episode's first visible error appears: roll the model out from the true first frame and
stop at the first step whose prediction has a visible error (at least 9 pixels whose largest channel
error exceeds VISIBLE_DELTA against the true frame, as `infinipaint evaluate` counts it). Prints that
step, its kind, the kinds before it, the number of wrong pixels, their bounding box and colours.

    .venv/bin/python scripts/first_error.py --model weights/cpu --episodes 8 --steps 120
"""
import argparse

import numpy as np
import torch

from infinipaint.evaluation.evaluate import dataset_episodes
from infinipaint.evaluation.scoring import VISIBLE_DELTA
from infinipaint.models.world_model import WorldModel
from infinipaint.models.encoding import drag_origins

VISIBLE_PIXELS = 9


def colours(frame: np.ndarray, where: np.ndarray) -> list:
    """Up to three of the distinct colours of `frame` (H, W, 3) at the pixels `where` (H, W)."""
    return np.unique(frame[where], axis=0)[:3].tolist()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="weights/cpu")
    p.add_argument("--data", default="data/eval-long")
    p.add_argument("--split", default="all")
    p.add_argument("--episodes", type=int, default=8)
    p.add_argument("--steps", type=int, default=120, help="give up on an episode after this many steps")
    p.add_argument("--keep-margin", type=float, default=None,
                   help="added to the logit of each latent value staying as it is (default: the model's own)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    eps = dataset_episodes(args.data, args.episodes, args.split, max_steps=args.steps)
    wm = WorldModel.load(args.model, keep_margin=args.keep_margin)
    for e in range(len(eps.keys)):
        actions = torch.from_numpy(eps.actions[e])
        origins = torch.from_numpy(drag_origins(eps.actions[e]))  # where each step's drag began
        z = wm.encode(eps.truth(0, [e]))
        for t in range(1, len(actions)):
            z = wm.advance(z, actions[t - 1:t], actions[t:t + 1], origins[t:t + 1])
            pred, truth = wm.decode(z)[0], eps.truth(t, [e])[0]
            wrong = np.abs(pred.astype(np.int16) - truth.astype(np.int16)).max(axis=-1) > VISIBLE_DELTA
            if wrong.sum() >= VISIBLE_PIXELS:
                ys, xs = np.nonzero(wrong)
                before = [str(eps.kinds[e][s]) for s in range(max(1, t - 3), t)]
                print(f"episode {e}: step {t} ({eps.kinds[e][t]}, after {', '.join(before)}), action "
                      f"{actions[t].tolist()}: {wrong.sum()} wrong pixels in y {ys.min()}-{ys.max()}, "
                      f"x {xs.min()}-{xs.max()}; predicted {colours(pred, wrong)}, true {colours(truth, wrong)}", flush=True)
                break
        else:
            print(f"episode {e}: no visible error in {len(actions) - 1} steps", flush=True)


if __name__ == "__main__":
    main()
