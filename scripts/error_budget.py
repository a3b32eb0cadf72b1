"""Where does a rollout's error come from: the model's own one-step mistakes, or their compounding?

Every step of each episode is predicted twice:
- teacher-forced: from the TRUE frame before it (encoded), the model's one-step error, by step kind;
- free-running: from the model's own previous prediction, as the simulator runs.
Both are decoded and counted in wrong pixels (largest channel error above the evaluation's
VISIBLE_DELTA): the one-step prediction against the true frame as the VAE renders it (encoded and
decoded: the dynamics' error alone), the free-running one against the true frame itself. Paint
stays on the canvas, so a one-step mistake stays until painted over: if the free-running error at
step t is about the running sum of the one-step errors, the rollout only accumulates the model's
own mistakes (better one-step accuracy is the fix); if it is much larger, errors breed errors
(train on the model's own inputs). The one-step errors are split into pixels the step really
changed and pixels it should have left alone. The VAE's own error (the true frame encoded and
decoded) is shown beside them.

    .venv/bin/python scripts/error_budget.py --model weights/cpu --episodes 4 --steps 500
"""
import argparse
from collections import defaultdict

import numpy as np
import torch

from infinipaint.evaluation.evaluate import dataset_episodes
from infinipaint.evaluation.scoring import VISIBLE_DELTA, wrong_pixels
from infinipaint.models.world_model import WorldModel
from infinipaint.models.encoding import drag_origins


def differs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(B, H, W) bool: the pixels whose largest channel difference exceeds VISIBLE_DELTA."""
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=-1) > VISIBLE_DELTA


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="weights/cpu")
    p.add_argument("--data", default="data/eval-long")
    p.add_argument("--split", default="all")
    p.add_argument("--episodes", type=int, default=4)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--keep-margin", type=float, default=None,
                   help="added to the logit of each latent value staying as it is (default: the model's own)")
    p.add_argument("--one-step-only", action="store_true", help="skip the free-running rollouts")
    args = p.parse_args()
    eps = dataset_episodes(args.data, args.episodes, args.split, max_steps=args.steps)
    wm = WorldModel.load(args.model, keep_margin=args.keep_margin)
    by_kind = defaultdict(lambda: np.zeros(6))  # kind -> steps, wrong px, visible-error steps, missed, spilled, grown
    marks = [m for m in (25, 50, 100, 250, 500, 1000) if m <= args.steps]
    rows = []  # per episode, per mark: (sum of one-step errors, free-running error, VAE error)
    for e in range(len(eps.keys)):
        actions = torch.from_numpy(eps.actions[e])
        origins = torch.from_numpy(drag_origins(eps.actions[e]))  # where each step's drag began
        n = len(actions) - 1
        one_step, vae_err, missed, spilled = (np.zeros(n + 1) for _ in range(4))
        for s in range(0, n, args.batch):  # steps s+1 .. s+B from the true frames s .. s+B-1
            t = np.arange(s, min(s + args.batch, n) + 1)
            truth = np.stack([eps.truth(int(i), [e])[0] for i in t])
            z = wm.encode(truth)
            seen = wm.decode(z)  # the true frames as the VAE renders them
            pred = wm.decode(wm.advance(z[:-1], actions[t[:-1]], actions[t[1:]], origins[t[1:]]))
            one_step[t[1:]] = wrong_pixels(pred, seen[1:])
            vae_err[t] = wrong_pixels(seen, truth)
            changed = differs(seen[1:], seen[:-1])  # what the step really painted
            wrong = differs(pred, seen[1:])
            missed[t[1:]] = (wrong & changed).sum(axis=(1, 2))  # should have changed (or to another colour)
            spilled[t[1:]] = (wrong & ~changed).sum(axis=(1, 2))  # should have stayed as it was
        free = np.zeros(n + 1)
        z = wm.encode(eps.truth(0, [e]))
        for t in range(1, n + 1):
            if not args.one_step_only:
                z = wm.advance(z, actions[t - 1:t], actions[t:t + 1], origins[t:t + 1])
                free[t] = wrong_pixels(wm.decode(z), eps.truth(t, [e]))[0]
            k = by_kind[eps.kinds[e][t]]
            k += (1, one_step[t], one_step[t] >= 9, missed[t], spilled[t], free[t] - free[t - 1])
        cum = np.cumsum(one_step)
        rows.append([(cum[m], free[m], vae_err[m]) for m in marks])
        print(f"episode {e}: " + "  ".join(f"@{m} {c:.0f}/{f:.0f}" for m, (c, f, _) in zip(marks, rows[-1]))
              + "  (running sum of one-step wrong pixels / free-running wrong pixels)", flush=True)
    rows = np.array(rows)  # (episodes, marks, 3)
    print("\nmean over episodes, wrong pixels of 50,176:")
    print(f"  {'step':>5s} {'sum of one-step':>16s} {'free-running':>13s} {'ratio':>6s} {'VAE alone':>10s}")
    for i, m in enumerate(marks):
        c, f, v = rows[:, i].mean(axis=0)
        print(f"  {m:5d} {c:16.0f} {f:13.0f} {f / max(c, 1):6.2f} {v:10.1f}")
    print("\none-step errors from the true frame, by step kind:")
    print(f"  {'kind':14s} {'steps':>6s} {'wrong px/step':>14s} {'visible (>=9 px)':>17s} "
          f"{'in what it painted':>19s} {'outside it':>11s} {'free-running growth':>20s}")
    for kind, (steps, wrong, visible, miss, spill, grown) in sorted(by_kind.items(), key=lambda kv: -kv[1][1]):
        print(f"  {kind:14s} {steps:6.0f} {wrong / steps:14.2f} {visible / steps:17.1%} "
              f"{miss / steps:19.2f} {spill / steps:11.2f} {grown / steps:20.2f}")
    print("(free-running growth: the change of the free-running error at steps of that kind, per step; "
          "summed over all steps it is the error at the last step)")


if __name__ == "__main__":
    main()
