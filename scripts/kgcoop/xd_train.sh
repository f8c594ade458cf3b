#!/bin/bash
# KgCoOp's xd_train.sh: what the official script runs for each of the 11 datasets, here for
# DATASET: training on all its classes with SHOTS images per class (default 4) and W 8.0, for
# each seed of SEEDS (default "1 2 3"), then the test (the few-shot protocol).
# Usage: DATA=/path/to/datasets bash scripts/kgcoop/xd_train.sh DATASET
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
[ $# -eq 1 ] || usage "xd_train.sh DATASET"
export EXTRA_OPTS="TRAINER.COOP.N_CTX 4 TRAINER.COOP.CSC False TRAINER.COOP.CLASS_TOKEN_POSITION end TRAINER.COOP.W ${WEIGHT:-8.0} ${EXTRA_OPTS:-}"
each_seed "$(dirname "${BASH_SOURCE[0]}")/../protocols/few_shot.sh" KgCoOp "${CFG:-vit_b16_ep100_ctxv1}" "$1" "${SHOTS:-4}"
