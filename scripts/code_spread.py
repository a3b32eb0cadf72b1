"""How far a step's change spreads in the latent: cells whose pixels change against cells whose codes change.

Each true frame of a few episodes is encoded; for every step, by step kind, it counts the 4x4-pixel
cells the step repainted and the latent cells whose code changed. The dynamics has to predict
every code change, so codes that change where no pixel did (an encoder reading its neighbours)
are work, and error, that a cell-local encoder (`encoder_kernel=1`) does not make.

    .venv/bin/python scripts/code_spread.py --model weights/cpu --episodes 2 --steps 300
"""
import argparse
from collections import defaultdict

import numpy as np
import torch

from infinipaint.evaluation.evaluate import dataset_episodes
from infinipaint.models import vae as vae_files

CELL = 4  # pixels per latent cell, each way


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="weights/cpu", help="a model directory holding vae.json + vae.safetensors")
    p.add_argument("--data", default="data/eval-long")
    p.add_argument("--split", default="all")
    p.add_argument("--episodes", type=int, default=2)
    p.add_argument("--steps", type=int, default=300)
    args = p.parse_args()
    eps = dataset_episodes(args.data, args.episodes, args.split, max_steps=args.steps)
    vae = vae_files.load(args.model)
    counts = defaultdict(lambda: np.zeros(4))  # kind -> steps, repainted cells, changed codes, of those not repainted
    for e in range(len(eps.keys)):
        n = len(eps.actions[e])
        frames = np.stack([eps.truth(t, [e])[0] for t in range(n)])  # (n, 224, 224, 3)
        with torch.no_grad():
            codes = torch.cat([vae.encode(vae_files.frames_to_float(frames[i : i + 100]))
                               for i in range(0, n, 100)]).numpy()
        coded = (codes[1:] != codes[:-1]).any(axis=1)  # (n - 1, 56, 56)
        side = frames.shape[1] // CELL
        painted = (frames[1:] != frames[:-1]).any(axis=-1).reshape(-1, side, CELL, side, CELL).any(axis=(2, 4))
        for t in range(n - 1):
            counts[eps.kinds[e][t + 1]] += (1, painted[t].sum(), coded[t].sum(), (coded[t] & ~painted[t]).sum())
        print(f"episode {e}: {n - 1} steps", flush=True)
    print(f"\ncells per step, by step kind ({args.model}):")
    print(f"  {'kind':14s} {'steps':>6s} {'repainted':>10s} {'codes changed':>14s} {'where none repainted':>21s}")
    total = np.zeros(4)
    for kind, c in sorted(counts.items(), key=lambda kv: -kv[1][2]):
        total += c
        print(f"  {kind:14s} {c[0]:6.0f} {c[1] / c[0]:10.2f} {c[2] / c[0]:14.2f} {c[3] / c[0]:21.2f}")
    print(f"  {'all':14s} {total[0]:6.0f} {total[1] / total[0]:10.2f} {total[2] / total[0]:14.2f} "
          f"{total[3] / total[0]:21.2f}")


if __name__ == "__main__":
    main()
