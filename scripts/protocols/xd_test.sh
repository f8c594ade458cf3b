#!/bin/bash
# Cross-dataset and domain generalization, step 2: evaluate the model that xd_train.sh
# trained on SOURCE (default imagenet) on all classes of DATASET.
# Output: $OUTPUT/evaluation/TRAINER/CFG_SHOTSshots[/RUN_TAG]/DATASET/seedSEED
# MODEL_DIR (default: the xd_train.sh folder) picks another model; MODEL_DIR=none evaluates
# without loading a model (zero-shot CLIP).
# Environment: see scripts/common.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
[ $# -eq 4 ] || usage "xd_test.sh TRAINER CFG DATASET SEED"
TRAINER=$1 CFG=$2 DATASET=$3 SEED=$4
SOURCE=${SOURCE:-imagenet}

require_data
load_extra_opts
CONFIG=$(trainer_config "${CFG_TRAINER:-$TRAINER}" "$CFG")
DATASET_CONFIG=$(dataset_config "$DATASET")
TAG=${CFG}_${SHOTS}shots${RUN_TAG:+/$RUN_TAG}
MODEL_DIR=${MODEL_DIR:-$OUTPUT/$SOURCE/$TRAINER/$TAG/seed$SEED}
DIR=$OUTPUT/evaluation/$TRAINER/$TAG/$DATASET/seed$SEED

MODEL_ARGS=()
if [ "$MODEL_DIR" != "none" ]; then
    EPOCH=$(load_epoch "$CONFIG")
    require_checkpoint "$MODEL_DIR" "$EPOCH"
    MODEL_ARGS=(--model-dir "$MODEL_DIR" --load-epoch "$EPOCH")
fi

skip_if_finished "$DIR" "$TEST_END"
run_train_py \
    --seed "$SEED" \
    --trainer "$TRAINER" \
    --dataset-config-file "$DATASET_CONFIG" \
    --config-file "$CONFIG" \
    --output-dir "$DIR" \
    "${MODEL_ARGS[@]}" \
    --eval-only
