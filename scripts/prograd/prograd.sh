#!/bin/bash
# ProGrad, few-shot (the official arguments): train on all classes of DATASET with LAMBDA
# (LOSS.LAMBDA, default 1.0) for each seed of SEEDS (default "1 2 3").
#   CFG   config of configs/trainers/ProGrad/ (rn50, rn50_ep50, rn50_ep100)
#   CTP   class token position (end or middle)
#   NCTX  number of context tokens
#   SHOTS number of shots (1, 2, 4, 8, 16)
#   CSC   class-specific context (False or True)
# Output: $OUTPUT/DATASET/ProGrad/CFG_SHOTSshots/nctxNCTX_cscCSC_ctpCTP/seedSEED
# Usage: DATA=/path/to/datasets bash scripts/prograd/prograd.sh DATASET CFG CTP NCTX SHOTS CSC
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
[ $# -eq 6 ] || usage "prograd.sh DATASET CFG CTP NCTX SHOTS CSC"
export RUN_TAG="nctx${4}_csc${6}_ctp${3}"
export EXTRA_OPTS="LOSS.LAMBDA ${LAMBDA:-1.0} TRAINER.COOP.N_CTX $4 TRAINER.COOP.CSC $6 TRAINER.COOP.CLASS_TOKEN_POSITION $3 ${EXTRA_OPTS:-}"
each_seed "$(dirname "${BASH_SOURCE[0]}")/../protocols/few_shot.sh" ProGrad "$2" "$1" "$5"
