#!/bin/bash
# MVLPT trained jointly on ELEVATER's 20 tasks (the official arguments), for each seed of SEEDS
# (default "1 2 3", as upstream). The tasks share one label space in alphabetical order; the
# result is each task's metric and their average.
#   TRAINER  UPT (MUPT), VPT (MVPT), CoOp (MCoOp; any other name, as upstream) or COCOOP
#   CFG      config of configs/trainers/MVLPT/ (vit_b16, vit_b32, ...)
#   NCTX     number of prompt tokens
#   SHOTS    images per class (1, 5, 20)
#   DATA     data root holding ELEVATER's classification/ folder (default: $DATA)
#   OUTPUT   output folder (default: $OUTPUT, else output/elevater_mt)
# Output: OUTPUT/TRAINER/CFG_SHOTSshots/nctxNCTX_csc_ctp/seedSEED
# Environment: SEEDS, TASKS (comma-separated, default ELEVATER's 20), EXTRA_OPTS (KEY VALUE
#              overrides appended last), DRY_RUN=1 (print the commands), FORCE=1, PYTHON.
# Usage: bash scripts/mvlpt/main_mt_elevater_cut.sh TRAINER CFG NCTX SHOTS [DATA [OUTPUT]]
set -euo pipefail
OUTPUT_ENV=${OUTPUT:-}  # before common.sh gives OUTPUT its own default
source "$(dirname "${BASH_SOURCE[0]}")/../protocols/elevater.sh"
[ $# -ge 4 ] && [ $# -le 6 ] || usage "main_mt_elevater_cut.sh TRAINER CFG NCTX SHOTS [DATA [OUTPUT]]"
TRAINER=$1 CFG=$2 NCTX=$3 SHOTS=$4
DATA=${5:-${DATA:-}}
OUTPUT=${6:-${OUTPUT_ENV:-output/elevater_mt}}
require_data
load_extra_opts
CONFIG="$(mvlpt_config "$CFG")"
TASKS="${TASKS:-hateful-memes,cifar-10,mnist,oxford-flower-102,oxford-iiit-pets,resisc45_clip,country211,food-101,stanford-cars,caltech-101,dtd,voc-2007-classification,cifar-100,fgvc-aircraft-2013b-variants102,patch-camelyon,rendered-sst2,gtsrb,eurosat_clip,fer-2013,kitti-distance}"
# MVLPT's joint ELEVATER loaders: batches of 64, in order (no shuffling)
LOADER=(DATALOADER.TRAIN_X.BATCH_SIZE 64 DATALOADER.TEST.BATCH_SIZE 64
        DATALOADER.TRAIN_X.SAMPLER SequentialSampler TEST.EVALUATOR ElevaterClassification)
prompt_opts "$TRAINER" "$NCTX"
for SEED in ${SEEDS:-1 2 3}; do
    run_elevater "$OUTPUT/$TRAINER/${CFG}_${SHOTS}shots/nctx${NCTX}_csc_ctp/seed$SEED" \
        --seed "$SEED" --trainer MVLPT --config-file "$CONFIG" --dataset "$TASKS" \
        --shots "$SHOTS" --multi-task "${PROMPT[@]}" "${LOADER[@]}"
done
