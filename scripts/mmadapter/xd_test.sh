#!/bin/bash
# MMA, cross-dataset / domain generalization: evaluate the ImageNet models of xd_train.sh on all
# classes of DATASET, for each seed of SEEDS (default "1 2 3").
# Usage: DATA=/path/to/datasets bash scripts/mmadapter/xd_test.sh DATASET
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
[ $# -eq 1 ] || usage "xd_test.sh DATASET"
each_seed "$(dirname "${BASH_SOURCE[0]}")/../protocols/xd_test.sh" MultiModalAdapter "${CFG:-vit_b16_ep5_imnet}" "$1"
