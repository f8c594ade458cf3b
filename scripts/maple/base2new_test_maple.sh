#!/bin/bash
# MaPLe, base-to-novel: evaluate the base-class model on the new (or base) classes of DATASET.
# Usage: DATA=/path/to/datasets bash scripts/maple/base2new_test_maple.sh DATASET SEED [new|base]
# CFG=<config name> picks another config of configs/trainers/MaPLe/; see scripts/common.sh.
WRAPPER="${BASH_SOURCE[0]}" exec bash "$(dirname "${BASH_SOURCE[0]}")/../protocols/base2new_test.sh" MaPLe "${CFG:-vit_b16_c2_ep5_batch4_2ctx}" "$@"
