#!/usr/bin/env bash
# What fast decoders cost (docs/decoding.md). Needs the maze study's models (bash scripts/main.sh -> runs/maze-study)
# and the Sudoku base models (bash scripts/bases.sh sudoku -> runs/sudoku-bases).
#   1. DTM with the replay buffer filled by each decoder: the maze study's small-h and one-phase c = 1 arms, seeds 0-2,
#      at the study's earlier settings (h = 3 to a_end = 12, 32 masked states per step, lr 1e-4, 256 buffer prompts;
#      the record docs/decoding/buffer was made with them), on the maze study's own base models, with rollouts decoded
#      exactly, with threshold 0.9 (random order), with a dual cache, and with both; held-out metrics and exact laws
#      always use the exact sampler.
#   2. dtm study decoding: every decoder beside the exact sampler on the trained maze and Sudoku models.
# Extra arguments go to every command (e.g. --overwrite).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh  # also sets HF_HUB_OFFLINE=1
declare -A decoders=(
  [exact]="{}"
  [threshold]="{threshold: 0.9}"
  [dual]="{cache: dual}"
  [threshold-dual]="{threshold: 0.9, cache: dual}"
)
for name in exact threshold dual threshold-dual; do
  .venv/bin/dtm study maze --config configs/maze-study.yaml --no-progress "controls=[\"1\"]" \
    a_end=12 small_h=3 lr=1e-4 micro_batch=32 buffer_prompts=256 \
    "base_model=runs/maze-study/seed{seed}/base/model" "rollout_decoding=${decoders[$name]}" \
    "output_dir=runs/decoding-buffer/$name" "$@"
done
.venv/bin/python -m dtm.studies.decoding runs/decoding-buffer  # runs/decoding-buffer/{results.json,report.md}
.venv/bin/dtm study decoding --config configs/decoding-study.yaml "$@"
