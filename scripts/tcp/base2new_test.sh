#!/bin/bash
# TCP, base-to-novel: evaluate on the new classes of DATASET the models base2new_train.sh
# trained (the last epoch: 25 on ImageNet and SUN397, 50 elsewhere), for each seed of SEEDS.
# Usage: DATA=/path/to/datasets bash scripts/tcp/base2new_test.sh DATASET
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
[ $# -eq 1 ] || usage "base2new_test.sh DATASET"
case $1 in  # the official train.py's epochs on ImageNet and SUN397
    imagenet|sun397) EPOCHS="OPTIM.MAX_EPOCH 25" ;;
    *) EPOCHS="" ;;
esac
export EXTRA_OPTS="TRAINER.COOP.N_CTX 4 TRAINER.COOP.CSC False TRAINER.COOP.W 1.0 TRAINER.COOP.CLASS_TOKEN_POSITION end $EPOCHS ${EXTRA_OPTS:-}"
each_seed "$(dirname "${BASH_SOURCE[0]}")/../protocols/base2new_test.sh" TCP "${CFG:-vit_b16_ep100_ctxv1}" "$1"
