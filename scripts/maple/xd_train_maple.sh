#!/bin/bash
# MaPLe, cross-dataset / domain generalization: train on all classes of DATASET (default imagenet), 16 shots.
# Usage: DATA=/path/to/datasets bash scripts/maple/xd_train_maple.sh [DATASET] SEED
# CFG=<config name> picks another config of configs/trainers/MaPLe/; see scripts/common.sh.
WRAPPER="${BASH_SOURCE[0]}" exec bash "$(dirname "${BASH_SOURCE[0]}")/../protocols/xd_train.sh" MaPLe "${CFG:-vit_b16_c2_ep5_batch4_2ctx_cross_datasets}" "$@"
