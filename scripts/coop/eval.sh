#!/bin/bash
# CoOp, cross-dataset / domain generalization (the official arguments): evaluate the ImageNet
# model of main.sh (16 shots, 16 context tokens, shared context, class token at the end) on
# DATASET for each seed of SEEDS (default "1 2 3").
# Output: $OUTPUT/evaluation/CoOp/CFG_16shots/nctx16_cscFalse_ctpend/DATASET/seedSEED
# Usage: DATA=/path/to/datasets bash scripts/coop/eval.sh DATASET CFG
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: eval.sh DATASET CFG" >&2; exit 2; }
export SHOTS=16 RUN_TAG="nctx16_cscFalse_ctpend"
export EXTRA_OPTS="TRAINER.COOP.N_CTX 16 TRAINER.COOP.CSC False TRAINER.COOP.CLASS_TOKEN_POSITION end ${EXTRA_OPTS:-}"
for SEED in ${SEEDS:-1 2 3}; do
    bash "$(dirname "${BASH_SOURCE[0]}")/../protocols/xd_test.sh" CoOp "$2" "$1" "$SEED"
done
