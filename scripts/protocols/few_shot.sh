#!/bin/bash
# Few-shot: train TRAINER (config CFG) on all classes of DATASET with SHOTS images per class
# and test on its test set.
# Output: $OUTPUT/DATASET/TRAINER/CFG_SHOTSshots[/RUN_TAG]/seedSEED
# With MODEL_DIR set (downloaded weights), evaluate that model instead, into
# $OUTPUT/few_shot/DATASET/TRAINER/CFG_SHOTSshots[/RUN_TAG]/seedSEED.
# Environment: see scripts/common.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
[ $# -eq 5 ] || usage "few_shot.sh TRAINER CFG DATASET SHOTS SEED"
TRAINER=$1 CFG=$2 DATASET=$3 SHOTS=$4 SEED=$5

require_data
load_extra_opts
CONFIG=$(trainer_config "${CFG_TRAINER:-$TRAINER}" "$CFG")
DATASET_CONFIG=$(dataset_config "$DATASET")
TAG=$DATASET/$TRAINER/${CFG}_${SHOTS}shots${RUN_TAG:+/$RUN_TAG}/seed$SEED
ARGS=(--seed "$SEED" --trainer "$TRAINER" --dataset-config-file "$DATASET_CONFIG"
      --config-file "$CONFIG")

if [ -z "${MODEL_DIR:-}" ]; then
    DIR=$OUTPUT/$TAG
    skip_if_finished "$DIR" "$TRAIN_END"
    run_train_py "${ARGS[@]}" --output-dir "$DIR" DATASET.NUM_SHOTS "$SHOTS"
else
    EPOCH=$(load_epoch "$CONFIG")
    require_checkpoint "$MODEL_DIR" "$EPOCH"
    DIR=$OUTPUT/few_shot/$TAG
    skip_if_finished "$DIR" "$TEST_END"
    run_train_py "${ARGS[@]}" --output-dir "$DIR" --model-dir "$MODEL_DIR" \
        --load-epoch "$EPOCH" --eval-only DATASET.NUM_SHOTS "$SHOTS"
fi
