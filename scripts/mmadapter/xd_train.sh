#!/bin/bash
# MMA, cross-dataset / domain generalization (the official scripts/mmadapter/xd_train.sh): train
# on all classes of ImageNet, 16 shots, for each seed of SEEDS (default "1 2 3").
# Usage: DATA=/path/to/datasets bash scripts/mmadapter/xd_train.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
[ $# -eq 0 ] || usage "xd_train.sh"
each_seed "$(dirname "${BASH_SOURCE[0]}")/../protocols/xd_train.sh" MultiModalAdapter "${CFG:-vit_b16_ep5_imnet}" imagenet
