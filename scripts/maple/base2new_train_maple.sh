#!/bin/bash
# MaPLe, base-to-novel: train on the base classes of DATASET (16 shots) with SEED.
# Usage: DATA=/path/to/datasets bash scripts/maple/base2new_train_maple.sh DATASET SEED
# CFG=<config name> picks another config of configs/trainers/MaPLe/; see scripts/common.sh.
WRAPPER="${BASH_SOURCE[0]}" exec bash "$(dirname "${BASH_SOURCE[0]}")/../protocols/base2new_train.sh" MaPLe "${CFG:-vit_b16_c2_ep5_batch4_2ctx}" "$@"
