#!/usr/bin/env bash
# The CPU-scale real-task run: pretrain the built-in model on 4x4 Sudoku (digits only), fine-tune it with DTM, and
# evaluate base and DTM models on the same 256 held-out puzzles with `dtm eval` (greedy, cell accuracy).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh  # also sets HF_HUB_OFFLINE=1
.venv/bin/dtm pretrain --config configs/pretrain-sudoku.yaml --overwrite "$@"
.venv/bin/dtm train --config configs/dtm-sudoku.yaml --overwrite "$@"
for name in pretrain dtm; do
  model=runs/sudoku/$name/model
  [ "$name" = dtm ] && model=runs/sudoku/dtm/final/model
  .venv/bin/dtm eval --model "$model" --task sudoku_digits --gen-lengths 16 --block-length 16 --decode-steps 16 \
    --num-examples 256 --output-dir "runs/sudoku/eval-$name" --overwrite "$@"
done
