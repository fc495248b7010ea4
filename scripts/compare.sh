#!/usr/bin/env bash
# DTM vs the RL baselines (diffu-GRPO, wd1, SPG) and the likelihood-free peers (DMPO, GDSD) on the maze task and on 4x4
# Sudoku, three seeds each, at equal rollouts and at equal compute: tables, curves and figures in
# runs/compare/{maze64,sudoku}/ (configs/compare-maze64.yaml: the narrow maze bases). Pretrains the base models of
# both tasks first where they are missing (scripts/bases.sh). Extra arguments go to both runs (e.g. seeds=[0] for a
# quicker look, --overwrite to start over).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bases.sh maze64
bash scripts/bases.sh sudoku
source scripts/venv.sh  # also sets HF_HUB_OFFLINE=1
for task in maze64 sudoku; do
  .venv/bin/dtm study compare --config "configs/compare-$task.yaml" "$@"
done
