#!/bin/bash
# TCP, base-to-novel (the official arguments of its scripts/base2new_train.sh): train on the base
# classes of DATASET (16 shots), 4 context tokens, one shared context, class token at the end,
# TRAINER.COOP.W 1.0, for each seed of SEEDS (default "1 2 3"); 25 epochs on ImageNet and
# SUN397 (the official train.py's override), 50 elsewhere.
# Usage: DATA=/path/to/datasets bash scripts/tcp/base2new_train.sh DATASET
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
[ $# -eq 1 ] || usage "base2new_train.sh DATASET"
case $1 in  # the official train.py's epochs on ImageNet and SUN397
    imagenet|sun397) EPOCHS="OPTIM.MAX_EPOCH 25" ;;
    *) EPOCHS="" ;;
esac
export EXTRA_OPTS="TRAINER.COOP.N_CTX 4 TRAINER.COOP.CSC False TRAINER.COOP.W 1.0 TRAINER.COOP.CLASS_TOKEN_POSITION end $EPOCHS ${EXTRA_OPTS:-}"
each_seed "$(dirname "${BASH_SOURCE[0]}")/../protocols/base2new_train.sh" TCP "${CFG:-vit_b16_ep100_ctxv1}" "$1"
