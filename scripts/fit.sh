#!/usr/bin/env bash
# The exact fit diagnostic of DTM on the maze (dtm study fit): `bash scripts/fit.sh levers` measures one lever at a
# time on one phase (configs/fit-levers.yaml), `bash scripts/fit.sh maze` the recommended settings over 4 phases
# (configs/fit-maze.yaml). Pretrains the base models first if they are missing (scripts/bases.sh maze). Extra
# arguments go to `dtm study fit` (e.g. --overwrite, seeds=[0]).
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: bash scripts/fit.sh levers|maze [key=value ...]}
shift
bash scripts/bases.sh maze
source scripts/venv.sh  # also sets HF_HUB_OFFLINE=1
.venv/bin/dtm study fit --config "configs/fit-$name.yaml" "$@"
