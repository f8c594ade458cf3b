#!/usr/bin/env bash
# The embedded demo: CoOp on a tiny random CLIP and a synthetic 8-colour dataset (generated on
# first use), trained on the 4 base classes, on a CPU in about a minute, with no download.
# It evaluates the untrained prompts, trains, and prints both base-class accuracies.
#   bash scripts/demo.sh            (DATA=folder for the generated images, default ./data;
#                                    OUT=output folder, default ./output/demo)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-data}
OUT=${OUT:-output/demo}
run=(python train.py --root "$DATA" --trainer CoOp --seed 1
     --dataset-config-file configs/datasets/demo.yaml
     --config-file configs/trainers/CoOp/demo_tiny.yaml)

"${run[@]}" --output-dir "$OUT/untrained" --eval-only DATASET.SUBSAMPLE_CLASSES base
"${run[@]}" --output-dir "$OUT/CoOp" DATASET.SUBSAMPLE_CLASSES base

last_accuracy() { grep -o '\* accuracy: [0-9.]*%' "$1/log.txt" | tail -n 1 | cut -d' ' -f3; }
echo
echo "Demo: base-class test accuracy (4 classes, chance 25.0%)"
echo "  untrained prompts:  $(last_accuracy "$OUT/untrained")"
echo "  after CoOp:         $(last_accuracy "$OUT/CoOp")"
