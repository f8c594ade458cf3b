#!/bin/bash
# Zero-shot CLIP on DATASET (a configs/datasets/ name, e.g. caltech101) with the CoOp config CFG
# (rn50, rn101, vit_b32, vit_b16), as MVLPT's zeroshot.sh.
# Output: OUTPUT/ZeroshotCLIP/CFG/DATASET
# Usage: bash scripts/mvlpt/zeroshot.sh DATASET CFG [DATA [OUTPUT]]
set -euo pipefail
[ $# -ge 2 ] && [ $# -le 4 ] || { echo "usage: zeroshot.sh DATASET CFG [DATA [OUTPUT]]" >&2; exit 2; }
[ $# -ge 3 ] && export DATA=$3
[ $# -ge 4 ] && export OUTPUT=$4
WRAPPER="${BASH_SOURCE[0]}" exec bash "$(dirname "${BASH_SOURCE[0]}")/../protocols/zeroshot.sh" ZeroshotCLIP "$2" "$1"
