#!/bin/bash
# MVLPT on one ELEVATER task (the official arguments): the prompts learned on CoOp's datasets
# and averaged over seeds (MODEL_DIR) are fine-tuned on DATASET with SHOTS images per class.
#   TRAINER  UPT (MUPT), VPT (MVPT), CoOp (MCoOp; any other name, as upstream) or COCOOP
#   CFG      config of configs/trainers/MVLPT/ (vit_b16, vit_b32, ...)
#   NCTX     number of prompt tokens
#   SHOTS    images per class (1, 5, 20)
#   SEED     seed of the few-shot draw and of training
#   DATASET  an ELEVATER task: caltech-101, cifar-10, ..., voc-2007-classification
#   DATA     data root holding ELEVATER's classification/ folder (default: $DATA)
#   OUTPUT   output folder (default: $OUTPUT, else output/elevater)
# Output: OUTPUT/DATASET/TRAINER/CFG_SHOTSshots/nctxNCTX_csc_ctp/seedSEED from the source prompts;
#         nctxNCTX_csc_ctp_scratch with MODEL_DIR=none, nctxNCTX_csc_ctp_from-<hash> from another
#         MODEL_DIR (the folder records its source in init_source.txt; one that started from
#         another source is refused, never counted as finished)
# Environment: MODEL_DIR  the source prompts (default: OUTPUT/<CoOp's 11 datasets>/TRAINER/
#                         CFG_SHOTSshots/nctxNCTX_csc_ctp, the folder of MVLPT's averaged
#                         checkpoint; "none": start from untrained prompts)
#              EXTRA_OPTS KEY VALUE overrides appended last; DRY_RUN=1 prints the command;
#              FORCE=1 runs again a finished run; PYTHON the interpreter.
# Unlike upstream, every branch loads MODEL_DIR: upstream lost --model-dir in the CoOp branch
# (commit 218e6a6) and never passed it in the CoCoOp branch.
# Usage: bash scripts/mvlpt/main_single_elevater_cut.sh TRAINER CFG NCTX SHOTS SEED DATASET [DATA [OUTPUT]]
set -euo pipefail
OUTPUT_ENV=${OUTPUT:-}  # before common.sh gives OUTPUT its own default
source "$(dirname "${BASH_SOURCE[0]}")/../protocols/elevater.sh"
[ $# -ge 6 ] && [ $# -le 8 ] || usage "main_single_elevater_cut.sh TRAINER CFG NCTX SHOTS SEED DATASET [DATA [OUTPUT]]"
TRAINER=$1 CFG=$2 NCTX=$3 SHOTS=$4 SEED=$5 DATASET=$6
DATA=${7:-${DATA:-}}
OUTPUT=${8:-${OUTPUT_ENV:-output/elevater}}
require_data
require_elevater_task "$DATASET"
load_extra_opts
CONFIG="$(mvlpt_config "$CFG")"
TAG="nctx${NCTX}_csc_ctp"
DEFAULT_SOURCE="$OUTPUT/$PRETRAIN_DATASET/$TRAINER/${CFG}_${SHOTS}shots/$TAG"
MODEL_DIR="${MODEL_DIR:-$DEFAULT_SOURCE}"
MODEL_ARGS=()
[ "$MODEL_DIR" = "none" ] || MODEL_ARGS=(--model-dir "$MODEL_DIR")
# MVLPT's ELEVATER loaders: test batches of 64; with one shot the training images in order
LOADER=(DATALOADER.TEST.BATCH_SIZE 64 TEST.EVALUATOR ElevaterClassification)
[ "$SHOTS" != "1" ] || LOADER+=(DATALOADER.TRAIN_X.SAMPLER SequentialSampler)
prompt_opts "$TRAINER" "$NCTX"
# the source of the initial prompts is part of the run: its folder and init_source.txt
RUN_DIR="$OUTPUT/$DATASET/$TRAINER/${CFG}_${SHOTS}shots/$TAG$(init_suffix "$MODEL_DIR" "$DEFAULT_SOURCE")/seed$SEED"
claim_init_source "$RUN_DIR" "$MODEL_DIR"
run_elevater "$RUN_DIR" \
    --seed "$SEED" --trainer MVLPT --config-file "$CONFIG" --dataset "$DATASET" \
    --shots "$SHOTS" "${MODEL_ARGS[@]}" "${PROMPT[@]}" "${LOADER[@]}"
