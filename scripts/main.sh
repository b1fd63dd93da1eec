#!/usr/bin/env bash
# The main job: set up .venv if needed, then redistribute timm:resnet50 with template d at equal FLOPs.
# Extra arguments are passed to `redistribute` (e.g. --json, --out out/resnet50_d).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/redistribute timm:resnet50 --template d --match flops "$@"
