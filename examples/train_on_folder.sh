#!/usr/bin/env bash
# The whole path on an image folder: redistribute a model's filters at equal FLOPs, then train it with timm.
#
#   bash examples/train_on_folder.sh DATA_DIR            # DATA_DIR/train/<class>/*.jpg, DATA_DIR/val/<class>/*.jpg
#   bash examples/train_on_folder.sh                     # no folder: a tiny synthetic one, a short CPU run
#
# Settings (environment variables):
#   MODEL=timm:resnet18  TEMPLATE=d  OUT=out/resnet18_d  EPOCHS=30  BATCH=64  INPUT_SIZE=3,224,224
#   PRETRAINED=1                 start the redistribution from the zoo's pretrained weights (timm/torchvision cache)
#   GPUS=4                       train with DDP on 4 GPUs of this machine (torchrun)
#   TEACHER=timm:resnet18 TEACHER_CKPT=runs/resnet18/last.pth.tar   distil from the original, trained on DATA_DIR
#   PYTHON=.venv/bin/python
set -euo pipefail

PYTHON=${PYTHON:-python}
DATA=${1:-}
MODEL=${MODEL:-timm:resnet18}
TEMPLATE=${TEMPLATE:-d}
EPOCHS=${EPOCHS:-30}
BATCH=${BATCH:-64}
INPUT_SIZE=${INPUT_SIZE:-3,224,224}
GPUS=${GPUS:-1}
EXTRA=()

if [[ -z "$DATA" ]]; then  # demo: four colour classes of 64x64 images, two epochs on the CPU
    DATA=$(mktemp -d)/colours
    "$PYTHON" - "$DATA" <<'PY'
import sys
from pathlib import Path

import numpy as np
from PIL import Image

rng = np.random.default_rng(0)
for split, n in (("train", 32), ("val", 8)):
    for name, rgb in {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 60, 220), "yellow": (230, 220, 40)}.items():
        folder = Path(sys.argv[1]) / split / name
        folder.mkdir(parents=True)
        for i in range(n):
            pixels = np.clip(np.array(rgb) + rng.normal(0, 25, (64, 64, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
PY
    echo "demo data in $DATA"
    INPUT_SIZE=3,64,64 EPOCHS=2 BATCH=16
    EXTRA=(--workers 0 --lr 0.1)
fi

NAME=${MODEL##*:}
OUT=${OUT:-out/${NAME}_${TEMPLATE}}

# 1. redistribute: writes $OUT/spec.json and $OUT/weights.safetensors (--force: overwrite an earlier result)
"$PYTHON" -m redistribute "$MODEL" --template "$TEMPLATE" --match flops --input-size "$INPUT_SIZE" --out "$OUT" --force \
    ${PRETRAINED:+--pretrained}

# 2. train: $OUT/train gets metrics.csv, last.pth.tar and the trained model (spec.json, config.json, model.safetensors)
TRAIN=(train "$OUT" --data-dir "$DATA" --epochs "$EPOCHS" --batch-size "$BATCH" --force "${EXTRA[@]}")
if [[ -n "${TEACHER:-}" ]]; then
    TRAIN+=(--teacher "$TEACHER" ${TEACHER_CKPT:+--teacher-checkpoint "$TEACHER_CKPT"})
fi
if [[ "$GPUS" -gt 1 ]]; then
    "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$GPUS" -m redistribute "${TRAIN[@]}" --device cuda --amp --channels-last
else
    "$PYTHON" -m redistribute "${TRAIN[@]}"
fi

# 3. use it: timm builds the trained model from the folder once the plugin is imported
"$PYTHON" - "$OUT/train" <<'PY'
import sys

import timm

import redistribute.timm  # noqa: F401  (registers the "redistributed" architecture)

model = timm.create_model(f"local-dir:{sys.argv[1]}", pretrained=True)
print(f"local-dir:{sys.argv[1]} -> {type(model).__name__}, {model.num_classes} classes, "
      f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters")
PY
