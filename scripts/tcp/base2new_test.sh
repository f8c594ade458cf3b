#!/bin/bash
# TCP, base-to-novel: evaluate on the new classes of DATASET the models base2new_train.sh
# trained (the last epoch: 25 on ImageNet and SUN397, 50 elsewhere), for each seed of SEEDS.
# Usage: DATA=/path/to/datasets bash scripts/tcp/base2new_test.sh DATASET
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
[ $# -eq 1 ] || usage "base2new_test.sh DATASET"
source "$(dirname "${BASH_SOURCE[0]}")/tcp_opts.sh" "$1"
each_seed "$(dirname "${BASH_SOURCE[0]}")/../protocols/base2new_test.sh" TCP "${CFG:-vit_b16_ep100_ctxv1}" "$1"
