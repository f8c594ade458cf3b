#!/bin/bash
# MaPLe with the published base-to-novel weights: evaluate WEIGHTSPATH/base/seedSEED on the base
# and the new classes of DATASET.
# Usage: DATA=/path/to/datasets bash scripts/maple/reproduce_maple.sh DATASET SEED WEIGHTSPATH
WRAPPER="${BASH_SOURCE[0]}" exec bash "$(dirname "${BASH_SOURCE[0]}")/../protocols/reproduce_base2new.sh" MaPLe "${CFG:-vit_b16_c2_ep5_batch4_2ctx}" "$@"
