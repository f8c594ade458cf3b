#!/bin/bash
# CoOp, base-to-novel (not scripted upstream): train on the base classes of DATASET (16 shots).
# Usage: DATA=/path/to/datasets bash scripts/coop/base2new_train.sh DATASET SEED
# CFG=<config name> picks another config of configs/trainers/CoOp/; see scripts/common.sh.
WRAPPER="${BASH_SOURCE[0]}" exec bash "$(dirname "${BASH_SOURCE[0]}")/../protocols/base2new_train.sh" CoOp "${CFG:-vit_b16_ep50_ctxv1}" "$@"
