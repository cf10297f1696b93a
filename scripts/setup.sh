#!/usr/bin/env bash
# Creates .venv (Python 3.11+) and installs anomalyforge with its test extras. Idempotent:
# a second call with unchanged pyproject.toml and constraints.txt returns in a second.
# Versions are pinned by constraints.txt (the versions the tests run on).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# WordNet data for TVG's keyword-to-prompt (Debian's wordnet-base; read with nltk's WordNet reader).
if [ ! -f /usr/share/wordnet/data.noun ] && command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y -q wordnet-base >/dev/null || echo "warning: apt-get install wordnet-base failed; keyword prompts fall back to the class name" >&2
  else
    echo "warning: /usr/share/wordnet missing; run 'sudo apt-get install wordnet-base' for keyword prompts" >&2
  fi
fi
stamp=.venv/.anomalyforge-installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch first, pinned: on this platform these builds come from the local wheel cache.
.venv/bin/python -m pip install -q -c constraints.txt "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install -q -c constraints.txt -e ".[test]"
echo "$want" > "$stamp"
