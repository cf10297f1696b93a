#!/usr/bin/env bash
# Installs what is needed, then runs the whole test suite (real data from ../shared/datasets).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
