#!/bin/bash
# Zero-shot CLIP on all classes of DATASET with the CoOp config CFG (rn50, rn101, vit_b32,
# vit_b16). TRAINER=ZeroshotCLIP2 uses the prompt ensemble.
# Output: $OUTPUT/ZeroshotCLIP/CFG/DATASET
# Usage: DATA=/path/to/datasets bash scripts/zsclip/zeroshot.sh DATASET CFG
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: zeroshot.sh DATASET CFG" >&2; exit 2; }
WRAPPER="${BASH_SOURCE[0]}" exec bash "$(dirname "${BASH_SOURCE[0]}")/../protocols/zeroshot.sh" "${TRAINER:-ZeroshotCLIP}" "$2" "$1"
