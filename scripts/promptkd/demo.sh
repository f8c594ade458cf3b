#!/usr/bin/env bash
# The embedded PromptKD demo (tiny-demo, the tiny CLIP pre-trained on colours, as teacher and
# student backbone; synthetic Demo dataset; CPU, no download):
# 1. a PromptSRC teacher trained on the 4 base classes (labelled);
# 2. PromptKD: the student distils from it on the unlabelled training images of all 8 classes;
#    it is evaluated on the new half of the classes (test) before and after distilling.
#   DATA=folder for the generated images (default ./data)   OUT=output folder (default ./output/demo)
#   DRY_RUN=1 prints the train.py commands instead of running them
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/common.sh  # dry_run, demo_train, last_accuracy
DATA=${DATA:-data}
OUT=${OUT:-output/demo}
common=(demo_train --root "$DATA" --seed 1 --dataset-config-file configs/datasets/demo.yaml)

"${common[@]}" --trainer PromptSRC --config-file configs/trainers/PromptSRC/demo_tiny.yaml \
    --output-dir "$OUT/PromptSRC" DATASET.SUBSAMPLE_CLASSES base
if dry_run; then
    teacher="$OUT/PromptSRC/VLPromptLearner/model.pth.tar-<last epoch>"
else
    teacher=$(ls "$OUT"/PromptSRC/VLPromptLearner/model.pth.tar-* | sort -t- -k2 -n | tail -n 1)
fi
student=("${common[@]}" --trainer PromptKD --config-file configs/trainers/PromptKD/demo_tiny.yaml)
"${student[@]}" --output-dir "$OUT/untrained_PromptKD" --eval-only \
    TRAINER.PROMPTKD.TEACHER_CKPT "$teacher"
"${student[@]}" --output-dir "$OUT/PromptKD" TRAINER.PROMPTKD.TEACHER_CKPT "$teacher"
! dry_run || exit 0
# the distillation loss (student vs teacher), mean over the first and over the last epoch
kd_loss() { grep -o "epoch \[$1/[0-9]*\].*loss_kd [0-9.e+-]* ([0-9.e+-]*)" \
    "$OUT/PromptKD/log.txt" | tail -n 1 | grep -o '([0-9.e+-]*)$' | tr -d '()'; }
epochs=$(grep -o 'epoch \[1/[0-9]*\]' "$OUT/PromptKD/log.txt" | head -n 1 | grep -o '/[0-9]*' | tr -d /)

echo
echo "Demo: the PromptKD student distilled from its PromptSRC teacher (4 classes each, chance 25.0%)"
echo "  teacher, base classes:                 $(last_accuracy "$OUT/PromptSRC")"
echo "  distillation loss (x KD_WEIGHT):       $(kd_loss 1) (epoch 1) -> $(kd_loss "$epochs") (epoch $epochs)"
echo "  untrained student, new classes:        $(last_accuracy "$OUT/untrained_PromptKD")"
echo "  distilled student, new classes:        $(last_accuracy "$OUT/PromptKD")"
