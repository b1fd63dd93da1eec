#!/usr/bin/env bash
# The test suite: set up .venv if needed, then run pytest (the slow sweeps are excluded; run them with -m slow).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
set +e
.venv/bin/python -m pytest -m "not slow" "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "no tests collected" >&2; exit 1; fi
exit "$rc"
