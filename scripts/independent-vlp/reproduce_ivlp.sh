#!/bin/bash
# IVLP with the published base-to-novel weights: evaluate WEIGHTSPATH/base/seedSEED on the base
# and the new classes of DATASET.
# Usage: DATA=/path/to/datasets bash scripts/independent-vlp/reproduce_ivlp.sh DATASET SEED WEIGHTSPATH
WRAPPER="${BASH_SOURCE[0]}" exec bash "$(dirname "${BASH_SOURCE[0]}")/../protocols/reproduce_base2new.sh" IVLP "${CFG:-vit_b16_c2_ep5_batch4_2+2ctx}" "$@"
