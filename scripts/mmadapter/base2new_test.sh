#!/bin/bash
# MMA, base-to-novel: evaluate on the new classes of DATASET the models base2new_train.sh trained
# (the last epoch, 5), for each seed of SEEDS (default "1 2 3").
# Usage: DATA=/path/to/datasets bash scripts/mmadapter/base2new_test.sh DATASET
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
[ $# -eq 1 ] || usage "base2new_test.sh DATASET"
each_seed "$(dirname "${BASH_SOURCE[0]}")/../protocols/base2new_test.sh" MultiModalAdapter "${CFG:-vit_b16_ep5}" "$1"
