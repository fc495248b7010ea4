#!/usr/bin/env bash
# The main job: set up on first use, then run the maze study (base models, four DTM arms, metrics, figures, report).
# Extra arguments go to `dtm study maze`, e.g. `bash scripts/main.sh --overwrite total_steps=40`.
# shellcheck source=scripts/venv.sh
source "$(dirname "$0")/venv.sh"
exec .venv/bin/dtm study maze --config configs/maze-study.yaml "$@"
