#!/bin/bash
# ProGrad, base-to-novel (the official values): evaluate on the new classes of DATASET the
# models of base2new_train_prograd.sh (SHOTS images per class, default 4; 16 context tokens;
# LAMBDA 1.0, LOSS.LAMBDA), for each seed of SEEDS (default "1 2 3").
# Usage: DATA=/path/to/datasets bash scripts/prograd/base2new_test_prograd.sh DATASET
set -euo pipefail
export SHOTS="${SHOTS:-4}"
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
[ $# -eq 1 ] || usage "base2new_test_prograd.sh DATASET"
export EXTRA_OPTS="LOSS.LAMBDA ${LAMBDA:-1.0} TRAINER.COOP.N_CTX 16 TRAINER.COOP.CSC False TRAINER.COOP.CLASS_TOKEN_POSITION end ${EXTRA_OPTS:-}"
each_seed "$(dirname "${BASH_SOURCE[0]}")/../protocols/base2new_test.sh" ProGrad "${CFG:-rn50_ep100}" "$1"
