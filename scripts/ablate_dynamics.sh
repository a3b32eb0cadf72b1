#!/bin/bash
# Stability ablations of the continuous `cpu` dynamics (issue 5): the same data and 800 training
# steps each, one thread; every run is then rolled out on 8 unseen episodes of data/eval-long for
# 300 steps. Prints a markdown table. About 75 minutes on one core.
#   scripts/ablate_dynamics.sh [VAE_DIR]        (default weights/cpu; run from the repository root)
set -euo pipefail
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
VAE=${1:-weights/cpu}
IP=.venv/bin/infinipaint
declare -A SETS=([base]="" [unroll1]="--model-set unroll=1" [nonoise]="--model-set noise_std=0"
                 [nosched]="--model-set sched_sampling=0")
for n in base unroll1 nonoise nosched; do
  [ -f runs/abl-$n/model/dynamics.json ] || $IP train dynamics --data data/cpu --vae "$VAE" --preset cpu \
    --out runs/abl-$n --max-episodes 150 --extra '{"oversample": {"press_": 20}}' --steps 800 --warmup 100 \
    --val-every 400 ${SETS[$n]}
  [ -f runs/eval-abl-$n/metrics.json ] || $IP evaluate --model runs/abl-$n/model --data data/eval-long \
    --split all --episodes 8 --max-steps 300 --ceiling-every 0 --threads 1 --out runs/eval-abl-$n --quiet
done
.venv/bin/python - base unroll1 nonoise nosched <<'PY'
import json, sys
from pathlib import Path
print("| run | SSIM @1 / 50 / 100 / 150 / 300 | first step < 0.95 | exact pixels @150 |")
print("|---|---|---|---|")
for n in sys.argv[1:]:
    m = json.loads(Path(f"runs/eval-abl-{n}/metrics.json").read_text())
    at = lambda key, s: m[key][m["steps"].index(s)]
    print(f"| {n} | " + " / ".join(f"{at('ssim_mean', s):.3f}" for s in (1, 50, 100, 150, 300))
          + f" | {m['onset_095_mean']:.0f} ± {m['onset_095_std']:.0f} | {at('exact_share', 150) * 100:.1f} % |")
PY
