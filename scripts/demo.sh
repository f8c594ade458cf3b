#!/usr/bin/env bash
# The embedded demo: a prompt learner (CoOp unless TRAINER says otherwise) on tiny-demo (a tiny
# CLIP pre-trained on colours, shipped with the code) and a synthetic 8-colour dataset (generated
# on first use), trained on the 4 base classes, on a CPU, with no download. It evaluates the untrained prompts, trains, and prints both
# base-class accuracies.
#   bash scripts/demo.sh                 DATA=folder for the generated images (default ./data)
#   TRAINER=MaPLe bash scripts/demo.sh   OUT=output folder (default ./output/demo)
# TRAINER: any trainer with a configs/trainers/<TRAINER>/demo_tiny.yaml (CoOp, CoCoOp, VPT,
# IVLP, MaPLe, PromptSRC, KgCoOp, ProGrad, MVLPT, TCP, MultiModalAdapter, CLIPLoRA, CoPrompt,
# ExtrasLinearProbe*), or ZeroshotCLIP / ZeroshotCLIP2 (evaluation only). PromptKD's demo is
# scripts/promptkd/demo.sh. DRY_RUN=1 prints the train.py commands instead.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh  # dry_run, demo_train, last_accuracy
DATA=${DATA:-data}
OUT=${OUT:-output/demo}
TRAINER=${TRAINER:-CoOp}
case $TRAINER in
    ZeroshotCLIP*) CONFIG=configs/trainers/CoOp/demo_tiny.yaml ;;  # CLIP's settings, as upstream
    PromptKD) echo "error: PromptKD's demo trains its teacher first: bash scripts/promptkd/demo.sh" >&2
              exit 2 ;;
    *) CONFIG=configs/trainers/$TRAINER/demo_tiny.yaml ;;
esac
if [ ! -f "$CONFIG" ]; then
    have=$(find configs/trainers -name demo_tiny.yaml | cut -d/ -f3 | sort | tr '\n' ' ')
    echo "error: no demo config for TRAINER=$TRAINER ($CONFIG); demos: ${have}ZeroshotCLIP" >&2
    exit 2
fi
run=(demo_train --root "$DATA" --trainer "$TRAINER" --seed 1
     --dataset-config-file configs/datasets/demo.yaml --config-file "$CONFIG")

"${run[@]}" --output-dir "$OUT/untrained_$TRAINER" --eval-only DATASET.SUBSAMPLE_CLASSES base
case $TRAINER in
    ZeroshotCLIP*) ;;  # nothing to train
    *) "${run[@]}" --output-dir "$OUT/$TRAINER" DATASET.SUBSAMPLE_CLASSES base ;;
esac
! dry_run || exit 0

echo
echo "Demo: base-class test accuracy (4 classes, chance 25.0%)"
case $TRAINER in
    ZeroshotCLIP*)
        echo "  $TRAINER:  $(last_accuracy "$OUT/untrained_$TRAINER")"
        echo "  (nothing trains: the pre-trained tiny CLIP's own score with hand-written prompts;"
        echo "  with OpenAI's weights this is CLIP's zero-shot score)" ;;
    *)
        echo "  untrained prompts:  $(last_accuracy "$OUT/untrained_$TRAINER")"
        echo "  after $TRAINER:$(printf '%*s' $((13 - ${#TRAINER})) '')$(last_accuracy "$OUT/$TRAINER")" ;;
esac
