#!/bin/bash
# MVLPT source: train VARIANT (CoOp, VPT, UPT, COCOOP) jointly on the tasks of TASKS (default:
# CoOp's 11 datasets) with SHOTS images per class, evaluating each task; the model of the best
# average validation accuracy is kept and tested.
# Output: $OUTPUT/TASKS/VARIANT/CFG_SHOTSshots/nctxNCTX_csc_ctp/seedSEED (the official layout)
# Environment: see scripts/common.sh and scripts/protocols/mvlpt_common.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/mvlpt_common.sh"
[ $# -eq 5 ] || usage "multitask.sh VARIANT CFG NCTX SHOTS SEED"
VARIANT=$1 CFG=$2 NCTX=$3 SHOTS=$4 SEED=$5

require_data
load_extra_opts
variant_opts "$VARIANT" "$NCTX"
CONFIG=$(trainer_config MVLPT "$CFG")
DIR=$OUTPUT/$TASKS/$(run_tag "$VARIANT" "$CFG" "$NCTX" "$SHOTS")/seed$SEED

skip_if_finished "$DIR" "$TRAIN_END"
run_train_py --seed "$SEED" --trainer MVLPT --config-file "$CONFIG" --output-dir "$DIR" \
    --dataset "$TASKS" --shots "$SHOTS" --dataset-coop --multi-task "${VARIANT_OPTS[@]}"
