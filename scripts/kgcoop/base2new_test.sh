#!/bin/bash
# KgCoOp, base-to-novel (the official arguments): evaluate on the new classes of DATASET the
# models base2new_train.sh trained with WEIGHT, for each seed of SEEDS (default "1 2 3").
# Usage: DATA=/path/to/datasets bash scripts/kgcoop/base2new_test.sh DATASET WEIGHT
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: base2new_test.sh DATASET WEIGHT" >&2; exit 2; }
export OUTPUT="${OUTPUT:-output}/w$2"
export EXTRA_OPTS="TRAINER.COOP.N_CTX 4 TRAINER.COOP.CSC False TRAINER.COOP.CLASS_TOKEN_POSITION end ${EXTRA_OPTS:-}"
for SEED in ${SEEDS:-1 2 3}; do
    bash "$(dirname "${BASH_SOURCE[0]}")/../protocols/base2new_test.sh" KgCoOp "${CFG:-vit_b16_ep100_ctxv1}" "$1" "$SEED"
done
