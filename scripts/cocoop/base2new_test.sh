#!/bin/bash
# CoCoOp, base-to-novel: evaluate the base-class model on the new (or base) classes of DATASET.
# Usage: DATA=/path/to/datasets bash scripts/cocoop/base2new_test.sh DATASET SEED [new|base]
# CFG=<config name> picks another config of configs/trainers/CoCoOp/; see scripts/common.sh.
WRAPPER="${BASH_SOURCE[0]}" exec bash "$(dirname "${BASH_SOURCE[0]}")/../protocols/base2new_test.sh" CoCoOp "${CFG:-vit_b16_c4_ep10_batch1_ctxv1}" "$@"
