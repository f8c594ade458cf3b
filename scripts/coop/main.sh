#!/bin/bash
# CoOp, few-shot (the official arguments): train on all classes of DATASET for each seed of
# SEEDS (default "1 2 3").
#   CFG   config of configs/trainers/CoOp/ (rn50, rn50_ep50, vit_b16_ep50, ...)
#   CTP   class token position (end or middle)
#   NCTX  number of context tokens
#   SHOTS number of shots (1, 2, 4, 8, 16)
#   CSC   class-specific context (False or True)
# Output: $OUTPUT/DATASET/CoOp/CFG_SHOTSshots/nctxNCTX_cscCSC_ctpCTP/seedSEED
# Usage: DATA=/path/to/datasets bash scripts/coop/main.sh DATASET CFG CTP NCTX SHOTS CSC
set -euo pipefail
[ $# -eq 6 ] || { echo "usage: main.sh DATASET CFG CTP NCTX SHOTS CSC" >&2; exit 2; }
DATASET=$1 CFG=$2 CTP=$3 NCTX=$4 SHOTS=$5 CSC=$6
export RUN_TAG="nctx${NCTX}_csc${CSC}_ctp${CTP}"
export EXTRA_OPTS="TRAINER.COOP.N_CTX $NCTX TRAINER.COOP.CSC $CSC TRAINER.COOP.CLASS_TOKEN_POSITION $CTP ${EXTRA_OPTS:-}"
for SEED in ${SEEDS:-1 2 3}; do
    bash "$(dirname "${BASH_SOURCE[0]}")/../protocols/few_shot.sh" CoOp "$CFG" "$DATASET" "$SHOTS" "$SEED"
done
