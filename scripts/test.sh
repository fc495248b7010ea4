#!/usr/bin/env bash
# The test suite: set up on first use, lint, then run every fast test (pass -m slow for the slow ones).
source "$(dirname "$0")/venv.sh"
.venv/bin/ruff check .
exec .venv/bin/pytest "$@"
