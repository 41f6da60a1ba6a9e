#!/usr/bin/env bash
# Install diar with its test extras into .venv, then lint, type-check and run the tests.
source "$(dirname "$0")/env.sh" test
set -x
ruff check diar jobs tests
ruff format --check diar jobs tests
mypy diar jobs
HF_HUB_OFFLINE=1 RAY_AUTH_MODE=disabled python -m pytest -q "$@"
