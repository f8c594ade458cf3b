#!/bin/bash
# Base-to-novel, step 2: evaluate the model trained by base2new_train.sh on the SUB classes
# (new, the default, or base) of DATASET.
# Output: $OUTPUT/base2new/test_SUB/DATASET/shots_SHOTS/TRAINER/CFG/seedSEED
# MODEL_DIR (default: the matching train_base folder) picks another model, e.g. downloaded
# weights; MODEL_DIR=none evaluates without loading a model (zero-shot CLIP).
# Environment: see scripts/common.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
[ $# -eq 4 ] || [ $# -eq 5 ] || usage "base2new_test.sh TRAINER CFG DATASET SEED [new|base]"
TRAINER=$1 CFG=$2 DATASET=$3 SEED=$4 SUB=${5:-new}
case "$SUB" in base | new) ;; *) die "SUB must be 'base' or 'new', got '$SUB'" ;; esac

require_data
load_extra_opts
CONFIG=$(trainer_config "${CFG_TRAINER:-$TRAINER}" "$CFG")
DATASET_CONFIG=$(dataset_config "$DATASET")
COMMON_DIR=$DATASET/shots_$SHOTS/$TRAINER/$CFG/seed$SEED
MODEL_DIR=${MODEL_DIR:-$OUTPUT/base2new/train_base/$COMMON_DIR}
DIR=$OUTPUT/base2new/test_$SUB/$COMMON_DIR

MODEL_ARGS=()
if [ "$MODEL_DIR" != "none" ]; then
    EPOCH=$(load_epoch "$CONFIG")
    require_checkpoint "$MODEL_DIR" "$EPOCH"
    MODEL_ARGS=(--model-dir "$MODEL_DIR" --load-epoch "$EPOCH")
fi

skip_if_finished "$DIR" "$TEST_END"
echo "Evaluating model"
run_train_py \
    --seed "$SEED" \
    --trainer "$TRAINER" \
    --dataset-config-file "$DATASET_CONFIG" \
    --config-file "$CONFIG" \
    --output-dir "$DIR" \
    "${MODEL_ARGS[@]}" \
    --eval-only \
    DATASET.NUM_SHOTS "$SHOTS" \
    DATASET.SUBSAMPLE_CLASSES "$SUB"
