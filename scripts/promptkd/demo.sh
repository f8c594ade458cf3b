#!/usr/bin/env bash
# The embedded PromptKD demo (tiny random CLIPs, synthetic Demo dataset, CPU, no download):
# 1. a PromptSRC teacher trained on the 4 base classes (labelled);
# 2. PromptKD: the student distils from it on the unlabelled training images of all 8 classes;
#    it is evaluated on the base half (val) and on the new half (test) of the classes.
#   DATA=folder for the generated images (default ./data)   OUT=output folder (default ./output/demo)
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-data}
OUT=${OUT:-output/demo}
common=(python train.py --root "$DATA" --seed 1 --dataset-config-file configs/datasets/demo.yaml)
last_accuracy() { grep -o '\* accuracy: [0-9.]*%' "$1/log.txt" | tail -n 1 | cut -d' ' -f3; }

"${common[@]}" --trainer PromptSRC --config-file configs/trainers/PromptSRC/demo_tiny.yaml \
    --output-dir "$OUT/PromptSRC" DATASET.SUBSAMPLE_CLASSES base
teacher=$(ls "$OUT"/PromptSRC/VLPromptLearner/model.pth.tar-* | sort -t- -k2 -n | tail -n 1)
kd=("${common[@]}" --trainer PromptKD --config-file configs/trainers/PromptKD/demo_tiny.yaml
    TRAINER.PROMPTKD.TEACHER_CKPT "$teacher")
"${kd[@]}" --output-dir "$OUT/PromptKD" TEST.FINAL_MODEL best_val

echo
echo "Demo: PromptKD student (chance 25.0%)"
echo "  teacher on the base classes:      $(last_accuracy "$OUT/PromptSRC")"
echo "  student, base half (best val):    $(grep -o 'val.*accuracy: [0-9.]*%' "$OUT/PromptKD/log.txt" | tail -n 1 | grep -o '[0-9.]*%$' || true)"
echo "  student, new half (test):         $(last_accuracy "$OUT/PromptKD")"
