#!/bin/bash
# MVLPT: average the best checkpoints of the SEEDS (default 1 2 3) of a source training
# (multitask.sh) into the folder above them, where transfer.sh finds it.
# Output: $OUTPUT/TASKS/VARIANT/CFG_SHOTSshots/nctxNCTX_csc_ctp/prompt_learner/model-best.pth.tar
# Environment: see scripts/common.sh and scripts/protocols/mvlpt_common.sh (DATA not needed).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/mvlpt_common.sh"
[ $# -eq 4 ] || usage "multitask_average.sh VARIANT CFG NCTX SHOTS"
VARIANT=$1 CFG=$2 NCTX=$3 SHOTS=$4

variant_opts "$VARIANT" "$NCTX"  # checks the variant
SOURCE=$OUTPUT/$TASKS/$(run_tag "$VARIANT" "$CFG" "$NCTX" "$SHOTS")
RUNS=()
for SEED in ${SEEDS:-1 2 3}; do
    run_finished "$SOURCE/seed$SEED" "$TRAIN_END" || dry_run || die "the source run $SOURCE/seed$SEED has" \
        "not finished; run scripts/mvlpt/main_mt_coopdata_cut.sh $VARIANT $CFG $NCTX $SHOTS" \
        "$SEED first."
    RUNS+=("$SOURCE/seed$SEED")
done
print_command "$PYTHON" scripts/avg_ckpt.py --output "$SOURCE" "${RUNS[@]}"
if dry_run; then
    exit 0
fi
"$PYTHON" "$REPO_ROOT/scripts/avg_ckpt.py" --output "$SOURCE" "${RUNS[@]}"
