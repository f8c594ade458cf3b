#!/bin/bash
# Base-to-novel, step 1: train TRAINER (config CFG) on the base classes of DATASET with
# SHOTS images per class (default 16); train.py then tests on the base classes.
# Output: $OUTPUT/base2new/train_base/DATASET/shots_SHOTS/TRAINER/CFG/seedSEED
# An unfinished run in that folder is resumed; a finished one is skipped.
# Environment: see scripts/common.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
[ $# -eq 4 ] || usage "base2new_train.sh TRAINER CFG DATASET SEED"
TRAINER=$1 CFG=$2 DATASET=$3 SEED=$4

require_data
load_extra_opts
CONFIG=$(trainer_config "${CFG_TRAINER:-$TRAINER}" "$CFG")
DATASET_CONFIG=$(dataset_config "$DATASET")
DIR=$OUTPUT/base2new/train_base/$DATASET/shots_$SHOTS/$TRAINER/$CFG/seed$SEED

skip_if_finished "$DIR" "$TRAIN_END"
run_train_py \
    --seed "$SEED" \
    --trainer "$TRAINER" \
    --dataset-config-file "$DATASET_CONFIG" \
    --config-file "$CONFIG" \
    --output-dir "$DIR" \
    DATASET.NUM_SHOTS "$SHOTS" \
    DATASET.SUBSAMPLE_CLASSES base
