#!/usr/bin/env bash
# Pretrain the maze base models of seeds 0-2 (configs/pretrain-maze.yaml) into runs/maze-bases/seed<N>, two at a time
# with one torch thread each (about 25 min on 2 CPU cores); a seed whose model exists is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh  # also sets HF_HUB_OFFLINE=1
pids=()
for seed in 0 1 2; do
  out=runs/maze-bases/seed$seed
  [ -f "$out/model/config.json" ] && continue
  OMP_NUM_THREADS=1 .venv/bin/dtm pretrain --config configs/pretrain-maze.yaml "seed=$seed" "output_dir=$out" \
    --overwrite --no-progress &
  pids+=("$!")
  if [ "${#pids[@]}" -eq 2 ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
done
for pid in "${pids[@]}"; do wait "$pid"; done
