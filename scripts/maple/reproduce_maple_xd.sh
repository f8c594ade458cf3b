#!/bin/bash
# MaPLe with the published ImageNet weights: evaluate WEIGHTSPATH/seedSEED on DATASET
# (cross-dataset targets or ImageNet variants).
# Usage: DATA=/path/to/datasets bash scripts/maple/reproduce_maple_xd.sh DATASET SEED WEIGHTSPATH
WRAPPER="${BASH_SOURCE[0]}" exec bash "$(dirname "${BASH_SOURCE[0]}")/../protocols/reproduce_xd.sh" MaPLe "${CFG:-vit_b16_c2_ep5_batch4_2ctx_cross_datasets}" "$@"
