#!/usr/bin/env bash
# The study's GPU preset on one GPU: full CIFAR-10, ResNet-20, 10 epochs, AMP, channels-last (about 10 minutes), then
# the NAS-Bench-101 ResNet-like cell, 4 epochs.
# Writes benchmarks/results/study_cifar10_gpu.md and study_nasbench_gpu.md. Needs the data beside the repository (../shared/data) or
# REDISTRIBUTE_DATA, and the packages of requirements-dev.txt (scripts/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'study_gpu.sh needs a CUDA GPU')"
exec "$PY" benchmarks/study.py --preset gpu "$@"
