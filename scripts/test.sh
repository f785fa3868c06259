#!/usr/bin/env bash
# Runs the whole test suite (sets up .venv on a fresh machine). Extra arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/_setup_env.sh"
exec python -m pytest "$@"
