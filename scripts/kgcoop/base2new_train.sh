#!/bin/bash
# KgCoOp, base-to-novel (the official arguments): train on the base classes of DATASET (16 shots)
# with WEIGHT the weight of its term (TRAINER.COOP.W; the official runs use 8.0), for each seed
# of SEEDS (default "1 2 3"); 4 context tokens, one shared context, class token at the end.
# Runs of each weight go to $OUTPUT/w<WEIGHT> (OUTPUT defaults to output).
# Usage: DATA=/path/to/datasets bash scripts/kgcoop/base2new_train.sh DATASET WEIGHT
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
[ $# -eq 2 ] || usage "base2new_train.sh DATASET WEIGHT"
export OUTPUT="${OUTPUT:-output}/w$2"
export EXTRA_OPTS="TRAINER.COOP.N_CTX 4 TRAINER.COOP.CSC False TRAINER.COOP.CLASS_TOKEN_POSITION end TRAINER.COOP.W $2 ${EXTRA_OPTS:-}"
each_seed "$(dirname "${BASH_SOURCE[0]}")/../protocols/base2new_train.sh" KgCoOp "${CFG:-vit_b16_ep100_ctxv1}" "$1"
