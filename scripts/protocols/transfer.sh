#!/bin/bash
# MVLPT target: train VARIANT on DATASET (a registered dataset name, e.g. Caltech101) with SHOTS
# images per class, starting from the averaged source prompts (multitask_average.sh).
# MODEL_DIR overrides the source folder (e.g. downloaded weights); MODEL_DIR=none trains from
# scratch (the single-task baseline).
# Output: $OUTPUT/DATASET/VARIANT/CFG_SHOTSshots/nctxNCTX_csc_ctp/seedSEED (the official layout)
# from the averaged source prompts; nctxNCTX_csc_ctp_scratch with MODEL_DIR=none, and
# nctxNCTX_csc_ctp_from-<hash> from another MODEL_DIR. The folder records its source
# (init_source.txt) and a folder that started from another source is refused.
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
DEFAULT_SOURCE=$OUTPUT/$TASKS/$TAG
SOURCE=${MODEL_DIR:-$DEFAULT_SOURCE}
FROM=()
if [ "$SOURCE" != "none" ]; then
    [ -f "$SOURCE/prompt_learner/model-best.pth.tar" ] || dry_run || die "no source prompts at" \
        "$SOURCE/prompt_learner/model-best.pth.tar. Train the source seeds" \
        "(scripts/mvlpt/main_mt_coopdata_cut.sh) and average them (scripts/mvlpt/avg_ckpt.sh)," \
        "or set MODEL_DIR (none: no source)."
    FROM=(--model-dir "$SOURCE")
fi
# the source of the initial prompts is part of the run: its folder and init_source.txt
DIR=$OUTPUT/$DATASET/$TAG$(init_suffix "$SOURCE" "$DEFAULT_SOURCE")/seed$SEED

claim_init_source "$DIR" "$SOURCE"
skip_if_finished "$DIR" "$TRAIN_END"
run_train_py --seed "$SEED" --trainer MVLPT --config-file "$CONFIG" --output-dir "$DIR" \
    --dataset "$DATASET" --shots "$SHOTS" --dataset-coop "${FROM[@]}" "${VARIANT_OPTS[@]}"
