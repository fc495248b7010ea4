#!/usr/bin/env bash
# The exact fit diagnostic of DTM on the maze (dtm study fit): `bash scripts/fit.sh NAME` runs configs/fit-NAME.yaml
# (levers, reach, maze, schedule, draws, maze4: what each measures is in its header and docs/fit.md). Pretrains the
# 3 x 3 base models first if they are missing (scripts/bases.sh maze; maze4 needs `bash scripts/bases.sh maze4`).
# Extra arguments go to `dtm study fit` (e.g. --overwrite, seeds=[0]).
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: bash scripts/fit.sh NAME (configs/fit-NAME.yaml) [key=value ...]}
shift
bash scripts/bases.sh maze
source scripts/venv.sh  # also sets HF_HUB_OFFLINE=1
.venv/bin/dtm study fit --config "configs/fit-$name.yaml" "$@"
