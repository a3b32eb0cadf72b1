#!/bin/bash
# The full interactive step of weights/cpu beside the model of commit c766345 (run with that commit's
# own code from a git worktree), one thread each, back to back in one run; fp32 and automatic precision.
#   git worktree add /tmp/oldtree c766345 && bash docs/learned-only/bench/bench.sh
set -euo pipefail
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1
OUT=$(pwd)/docs/learned-only/bench
OLD=${OLD:-/tmp/oldtree}
for p in fp32 auto; do
  flag=$([ $p = fp32 ] && echo --fp32 || true)
  (cd "$OLD" && PYTHONPATH="$OLD/src" "$OLDPWD/.venv/bin/python" -m infinipaint.cli bench model --model weights/cpu \
    --threads 1 --repeats 50 $flag --json > "$OUT/bench-old-$p.json")
  .venv/bin/infinipaint bench model --model weights/cpu --threads 1 --repeats 50 $flag --json > "$OUT/bench-new-$p.json"
done
