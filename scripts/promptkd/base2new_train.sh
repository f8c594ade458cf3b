#!/bin/bash
# PromptKD, base-to-novel (transductive): distil the teacher into the student on the unlabelled
# training images of all classes of DATASET with SEED; the run evaluates the base half of the
# classes (val, each epoch; the best is kept) and the new half (test).
# Usage: DATA=/path/to/datasets bash scripts/promptkd/base2new_train.sh DATASET SEED
# The teacher: teacher_model/<DATASET.NAME>/VLPromptLearner/model-best.pth.tar (the released
# ViT-L/14 PromptSRC teachers), or EXTRA_OPTS='TRAINER.PROMPTKD.TEACHER_CKPT /path/file'.
# KD_WEIGHT: 200 for fgvc_aircraft, oxford_flowers and dtd, 1000 otherwise (the official
# script's note); set KD_WEIGHT to override. Output:
# $OUTPUT/base2new/train_base/DATASET/shots_0/PromptKD/CFG/seed_SEED (the official folder).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
[ $# -eq 2 ] || usage "base2new_train.sh DATASET SEED"
DATASET=$1 SEED=$2 CFG=${CFG:-vit_b16_c2_ep20_batch8_4+4ctx}
case $DATASET in
    fgvc_aircraft|oxford_flowers|dtd) KD_WEIGHT=${KD_WEIGHT:-200.0} ;;
    *) KD_WEIGHT=${KD_WEIGHT:-1000.0} ;;
esac

require_data
load_extra_opts
CONFIG=$(trainer_config PromptKD "$CFG")
DATASET_CONFIG=$(dataset_config "$DATASET")
DIR=$OUTPUT/base2new/train_base/$DATASET/shots_0/PromptKD/$CFG/seed_$SEED

skip_if_finished "$DIR" "$TRAIN_END"
run_train_py \
    --seed "$SEED" \
    --trainer PromptKD \
    --dataset-config-file "$DATASET_CONFIG" \
    --config-file "$CONFIG" \
    --output-dir "$DIR" \
    DATASET.NUM_SHOTS 0 \
    TRAINER.MODAL base2novel \
    TRAINER.PROMPTKD.TEMPERATURE 1.0 \
    TRAINER.PROMPTKD.KD_WEIGHT "$KD_WEIGHT"
