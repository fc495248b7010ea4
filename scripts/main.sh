#!/usr/bin/env bash
# The main job: set up on first use, then run the CPU demo (pretrain -> DTM -> compare with the exact target).
source "$(dirname "$0")/venv.sh"
exec .venv/bin/dtm demo "$@"
