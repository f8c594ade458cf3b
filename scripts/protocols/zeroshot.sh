#!/bin/bash
# Zero-shot CLIP (TRAINER ZeroshotCLIP or ZeroshotCLIP2) on all classes of DATASET, with the
# CoOp config CFG (rn50, rn101, vit_b32, vit_b16).
# Output: $OUTPUT/TRAINER/CFG/DATASET (the official layout).
# Environment: see scripts/common.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
[ $# -eq 3 ] || usage "zeroshot.sh TRAINER CFG DATASET"
TRAINER=$1 CFG=$2 DATASET=$3

require_data
load_extra_opts
CONFIG=$(trainer_config "${CFG_TRAINER:-CoOp}" "$CFG")
DATASET_CONFIG=$(dataset_config "$DATASET")
DIR=$OUTPUT/$TRAINER/$CFG/$DATASET

skip_if_finished "$DIR" "$TEST_END"
run_train_py \
    --trainer "$TRAINER" \
    --dataset-config-file "$DATASET_CONFIG" \
    --config-file "$CONFIG" \
    --output-dir "$DIR" \
    --eval-only
