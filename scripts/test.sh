#!/usr/bin/env bash
# Installs what is needed, checks lint (ruff) and types (mypy), then runs the whole test suite
# (real data from ../shared/datasets); `-m "not integration"` runs the tests that need no data.
# Arguments go to pytest unchanged (scripts/test.sh tests/synth -x ...). In CI (CI=true), with
# ANOMALYFORGE_REQUIRE_DATA=1 or with --require-data, missing real data stops the run with one
# line instead of skipping every end-to-end test. The last line says how many tests skipped and why.
# ANOMALYFORGE_TEST_THREADS (default 1) sets torch's threads for the session.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests benchmarks
.venv/bin/mypy
report=$(mktemp "${TMPDIR:-/tmp}/anomalyforge-tests.XXXXXX.xml")
trap 'rm -f "$report"' EXIT
rc=0
.venv/bin/python -m pytest -q --junitxml="$report" "$@" || rc=$?
.venv/bin/python - "$report" "$rc" <<'PY' || true
import collections
import sys
import xml.etree.ElementTree as ET

path, rc = sys.argv[1], int(sys.argv[2])
try:
    root = ET.parse(path).getroot()
except (OSError, ET.ParseError):
    print(f"test.sh: pytest exited with {rc} before running tests (no report)")
    sys.exit(0)
cases = list(root.iter("testcase"))
if not cases:
    print(f"test.sh: no tests ran; pytest exit {rc}")
    sys.exit(0)
why = collections.Counter()
for c in cases:
    s = c.find("skipped")
    if s is not None:
        msg = (s.get("message") or "").strip() or "no reason given"
        why[msg.removeprefix("Skipped: ")] += 1
total = sum(why.values())
reasons = "; ".join(f"{n} x {m}" for m, n in why.most_common())
print(f"test.sh: {total} of {len(cases)} tests skipped" + (f" ({reasons})" if total else "") + f"; pytest exit {rc}")
PY
exit "$rc"
