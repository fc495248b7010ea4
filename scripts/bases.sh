#!/usr/bin/env bash
# Pretrain the base models of seeds 0-2 for a task (configs/pretrain-TASK.yaml) into runs/TASK-bases/seed<N>, side by
# side with one torch thread each; a seed whose model exists is skipped. Usage: bash scripts/bases.sh maze|maze64|maze4|sudoku
# (sudoku, 1500 steps each: 610 s on 2 CPU cores; maze, 3000 steps each: about 25 min, measured two at a time).
set -euo pipefail
cd "$(dirname "$0")/.."
task=${1:?usage: bash scripts/bases.sh maze|maze64|maze4|sudoku}
source scripts/venv.sh  # also sets HF_HUB_OFFLINE=1
pids=()
for seed in 0 1 2; do
  out=runs/$task-bases/seed$seed
  [ -f "$out/model/config.json" ] && continue
  OMP_NUM_THREADS=1 .venv/bin/dtm pretrain --config "configs/pretrain-$task.yaml" "seed=$seed" "output_dir=$out" \
    --overwrite --no-progress &
  pids+=("$!")
done
for pid in "${pids[@]}"; do wait "$pid"; done
