#!/usr/bin/env bash
# What fast decoders cost (docs/decoding.md). Needs the Sudoku base models (bash scripts/bases.sh sudoku ->
# runs/sudoku-bases); makes the rest.
#   0. The maze study at its earlier settings (docs/maze-study/trials/a12-h3-s32/study.yaml: hidden 128, 1000-step
#      bases, h = 3 to a_end = 12, 32 masked states per step, lr 1e-4, 256 buffer prompts), whose bases and arms the
#      records docs/decoding/{buffer,study} were made on -> runs/maze-study-a12-h3-s32 (skipped once it exists).
#   1. DTM with the replay buffer filled by each decoder: that study's small-h and one-phase c = 1 arms, seeds 0-2,
#      on its base models, with rollouts decoded exactly, with threshold 0.9 (random order), with a dual cache, and
#      with both; held-out metrics and exact laws always use the exact sampler.
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
study=docs/maze-study/trials/a12-h3-s32/study.yaml
[ -f runs/maze-study-a12-h3-s32/results.json ] ||
  .venv/bin/dtm study maze --config "$study" --no-progress output_dir=runs/maze-study-a12-h3-s32 "$@"
for name in exact threshold dual threshold-dual; do
  .venv/bin/dtm study maze --config "$study" --no-progress "controls=[\"1\"]" \
    "base_model=runs/maze-study-a12-h3-s32/seed{seed}/base/model" "rollout_decoding=${decoders[$name]}" \
    "output_dir=runs/decoding-buffer/$name" "$@"
done
.venv/bin/python -m dtm.studies.decoding runs/decoding-buffer  # runs/decoding-buffer/{results.json,report.md}
.venv/bin/dtm study decoding --config configs/decoding-study.yaml "$@"
