#!/bin/bash
# CoOp, base-to-novel (not scripted upstream): evaluate on the new (or base) classes of DATASET.
# Usage: DATA=/path/to/datasets bash scripts/coop/base2new_test.sh DATASET SEED [new|base]
# CFG=<config name> picks another config of configs/trainers/CoOp/; see scripts/common.sh.
WRAPPER="${BASH_SOURCE[0]}" exec bash "$(dirname "${BASH_SOURCE[0]}")/../protocols/base2new_test.sh" CoOp "${CFG:-vit_b16_ep50_ctxv1}" "$@"
