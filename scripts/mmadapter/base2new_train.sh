#!/bin/bash
# MMA, base-to-novel (the official scripts/mmadapter/base2new_train.sh): train on the base classes
# of DATASET (16 shots) for each seed of SEEDS (default "1 2 3"). The official run_examples.sh
# uses CFG=vit_b16_ep5 (default here) and vit_b16_ep5_imnet for ImageNet.
# Usage: DATA=/path/to/datasets bash scripts/mmadapter/base2new_train.sh DATASET
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
[ $# -eq 1 ] || usage "base2new_train.sh DATASET"
each_seed "$(dirname "${BASH_SOURCE[0]}")/../protocols/base2new_train.sh" MultiModalAdapter "${CFG:-vit_b16_ep5}" "$1"
