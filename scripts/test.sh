#!/usr/bin/env bash
# The test suite: set up .venv if needed, then run pytest. Tests marked slow are skipped unless -m slow is given
# (tests/conftest.py), so plain `pytest` and this script run the same default suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "no tests collected" >&2; exit 1; fi
exit "$rc"
