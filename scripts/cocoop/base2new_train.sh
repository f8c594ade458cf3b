#!/bin/bash
# CoCoOp, base-to-novel: train on the base classes of DATASET (16 shots) with SEED.
# Usage: DATA=/path/to/datasets bash scripts/cocoop/base2new_train.sh DATASET SEED
# CFG=<config name> picks another config of configs/trainers/CoCoOp/; see scripts/common.sh.
WRAPPER="${BASH_SOURCE[0]}" exec bash "$(dirname "${BASH_SOURCE[0]}")/../protocols/base2new_train.sh" CoCoOp "${CFG:-vit_b16_c4_ep10_batch1_ctxv1}" "$@"
