#!/bin/bash
# MVLPT target: train VARIANT on DATASET (a registered dataset name, e.g. Caltech101) with SHOTS
# images per class, starting from the averaged source prompts (multitask_average.sh).
# MODEL_DIR overrides the source folder (e.g. downloaded weights); MODEL_DIR=none trains from
# scratch (the single-task baseline).
# Output: $OUTPUT/DATASET/VARIANT/CFG_SHOTSshots/nctxNCTX_csc_ctp/seedSEED (the official layout)
# Environment: see scripts/common.sh and scripts/protocols/mvlpt_common.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/mvlpt_common.sh"
[ $# -eq 6 ] || usage "transfer.sh VARIANT CFG NCTX SHOTS SEED DATASET"
VARIANT=$1 CFG=$2 NCTX=$3 SHOTS=$4 SEED=$5 DATASET=$6

require_data
load_extra_opts
variant_opts "$VARIANT" "$NCTX"
CONFIG=$(trainer_config MVLPT "$CFG")
TAG=$(run_tag "$VARIANT" "$CFG" "$NCTX" "$SHOTS")
SOURCE=${MODEL_DIR:-$OUTPUT/$TASKS/$TAG}
FROM=()
if [ "$SOURCE" != "none" ]; then
    [ -f "$SOURCE/prompt_learner/model-best.pth.tar" ] || die "no source prompts at" \
        "$SOURCE/prompt_learner/model-best.pth.tar. Train the source seeds" \
        "(scripts/mvlpt/main_mt_coopdata_cut.sh) and average them (scripts/mvlpt/avg_ckpt.sh)," \
        "or set MODEL_DIR (none: no source)."
    FROM=(--model-dir "$SOURCE")
fi
DIR=$OUTPUT/$DATASET/$TAG/seed$SEED

skip_if_finished "$DIR" "$TRAIN_END"
run_train_py --seed "$SEED" --trainer MVLPT --config-file "$CONFIG" --output-dir "$DIR" \
    --dataset "$DATASET" --shots "$SHOTS" --dataset-coop "${FROM[@]}" "${VARIANT_OPTS[@]}"
