#!/usr/bin/env bash
# Create .venv if missing and install the pinned torch/torchvision, the dev requirements and the package.
# Idempotent: a stamp file skips the install when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv" >&2
  "$PY" -m venv .venv
fi
stamp=.venv/.redistribute-setup
if [ ! -f "$stamp" ] || [ requirements-dev.txt -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "installing requirements into .venv (first time: a few minutes)" >&2
  .venv/bin/python -m pip install -q --upgrade pip >&2
  .venv/bin/python -m pip install -q -r requirements-dev.txt >&2
  .venv/bin/python -m pip install -q -e '.[test]' >&2
  touch "$stamp"
fi
# Bytecode for the package, as a non-editable install has: an editable install compiles on first import, and not at
# all where PYTHONDONTWRITEBYTECODE is set (then every command pays ~80 ms compiling our modules). Only stale
# files are recompiled.
.venv/bin/python -m compileall -q redistribute >/dev/null
