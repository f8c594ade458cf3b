#!/bin/bash
# CoCoOp, cross-dataset / domain generalization: evaluate the ImageNet model on DATASET.
# Usage: DATA=/path/to/datasets bash scripts/cocoop/xd_test.sh DATASET SEED
# CFG=<config name> picks another config of configs/trainers/CoCoOp/; see scripts/common.sh.
WRAPPER="${BASH_SOURCE[0]}" exec bash "$(dirname "${BASH_SOURCE[0]}")/../protocols/xd_test.sh" CoCoOp "${CFG:-vit_b16_c4_ep10_batch1_ctxv1}" "$@"
