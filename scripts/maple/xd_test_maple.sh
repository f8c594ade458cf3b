#!/bin/bash
# MaPLe, cross-dataset / domain generalization: evaluate the ImageNet model on DATASET.
# Usage: DATA=/path/to/datasets bash scripts/maple/xd_test_maple.sh DATASET SEED
# CFG=<config name> picks another config of configs/trainers/MaPLe/; see scripts/common.sh.
WRAPPER="${BASH_SOURCE[0]}" exec bash "$(dirname "${BASH_SOURCE[0]}")/../protocols/xd_test.sh" MaPLe "${CFG:-vit_b16_c2_ep5_batch4_2ctx_cross_datasets}" "$@"
