#!/bin/bash
# Cross-dataset and domain generalization, step 1: train TRAINER (config CFG) on all classes
# of DATASET (default imagenet) with SHOTS images per class (default 16).
# Output: $OUTPUT/DATASET/TRAINER/CFG_SHOTSshots[/RUN_TAG]/seedSEED
# Environment: see scripts/common.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
case $# in
    3) TRAINER=$1 CFG=$2 DATASET=imagenet SEED=$3 ;;
    4) TRAINER=$1 CFG=$2 DATASET=$3 SEED=$4 ;;
    *) usage "xd_train.sh TRAINER CFG [DATASET] SEED" ;;
esac

require_data
load_extra_opts
CONFIG=$(trainer_config "${CFG_TRAINER:-$TRAINER}" "$CFG")
DATASET_CONFIG=$(dataset_config "$DATASET")
DIR=$OUTPUT/$DATASET/$TRAINER/${CFG}_${SHOTS}shots${RUN_TAG:+/$RUN_TAG}/seed$SEED

skip_if_finished "$DIR" "$TRAIN_END"
run_train_py \
    --seed "$SEED" \
    --trainer "$TRAINER" \
    --dataset-config-file "$DATASET_CONFIG" \
    --config-file "$CONFIG" \
    --output-dir "$DIR" \
    DATASET.NUM_SHOTS "$SHOTS"
