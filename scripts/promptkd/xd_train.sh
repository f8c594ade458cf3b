#!/bin/bash
# PromptKD, cross-dataset (transductive): distil the ImageNet-trained teacher into the student
# on the unlabelled training images of DATASET with SEED, then test on all its classes.
# Usage: DATA=/path/to/datasets bash scripts/promptkd/xd_train.sh DATASET SEED
# The teacher: teacher_model/ImageNet-xd/VLPromptLearner_large/model.pth.tar-20, or
# EXTRA_OPTS='TRAINER.PROMPTKD.TEACHER_CKPT /path/file'. Output (the official folder):
# $OUTPUT/DATASET/PromptKD/CFG_0shots/seedSEED
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
[ $# -eq 2 ] || usage "xd_train.sh DATASET SEED"
DATASET=$1 SEED=$2 CFG=${CFG:-vit_b16_c2_ep20_batch8_4+4ctx_cross_datasets}

# the cross-dataset protocol with no labels read (0 shots: its folder is the official one)
export SHOTS=0
export EXTRA_OPTS="DATASET.SUBSAMPLE_CLASSES all TRAINER.PROMPTKD.TEMPERATURE 1.0 TRAINER.PROMPTKD.KD_WEIGHT ${KD_WEIGHT:-1000.0} TRAINER.MODAL cross ${EXTRA_OPTS:-}"
WRAPPER="${BASH_SOURCE[0]}" exec bash "$(dirname "${BASH_SOURCE[0]}")/../protocols/xd_train.sh" PromptKD "$CFG" "$DATASET" "$SEED"
