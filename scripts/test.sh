#!/usr/bin/env bash
# Installs what is needed, checks lint (ruff) and types (mypy), then runs the test suite
# (real data from ../shared/datasets). Arguments go to pytest, e.g. -m "not integration".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests benchmarks
.venv/bin/mypy
exec .venv/bin/python -m pytest -q "$@"
