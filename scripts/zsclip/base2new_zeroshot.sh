#!/bin/bash
# Zero-shot CLIP in the base-to-novel layout (the CLIP row of the base-to-novel table):
# evaluate on the base and on the new classes of DATASET with the CoOp config CFG (default
# vit_b16), into $OUTPUT/base2new/test_{base,new}/DATASET/shots_16/ZeroshotCLIP/CFG/seed1.
# Usage: DATA=/path/to/datasets bash scripts/zsclip/base2new_zeroshot.sh DATASET [CFG]
set -euo pipefail
[ $# -eq 1 ] || [ $# -eq 2 ] || { echo "usage: base2new_zeroshot.sh DATASET [CFG]" >&2; exit 2; }
export MODEL_DIR=none CFG_TRAINER=CoOp
for SUB in base new; do
    bash "$(dirname "${BASH_SOURCE[0]}")/../protocols/base2new_test.sh" "${TRAINER:-ZeroshotCLIP}" \
        "${2:-vit_b16}" "$1" "${SEED:-1}" "$SUB"
done
