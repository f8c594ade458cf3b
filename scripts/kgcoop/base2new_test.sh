#!/bin/bash
# KgCoOp, base-to-novel (the official arguments): evaluate on the new classes of DATASET the
# models base2new_train.sh trained with WEIGHT, for each seed of SEEDS (default "1 2 3").
# Usage: DATA=/path/to/datasets bash scripts/kgcoop/base2new_test.sh DATASET WEIGHT
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
[ $# -eq 2 ] || usage "base2new_test.sh DATASET WEIGHT"
export OUTPUT="${OUTPUT:-output}/w$2"
export EXTRA_OPTS="TRAINER.COOP.N_CTX 4 TRAINER.COOP.CSC False TRAINER.COOP.CLASS_TOKEN_POSITION end ${EXTRA_OPTS:-}"
each_seed "$(dirname "${BASH_SOURCE[0]}")/../protocols/base2new_test.sh" KgCoOp "${CFG:-vit_b16_ep100_ctxv1}" "$1"
