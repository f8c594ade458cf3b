#!/bin/bash
# PromptSRC, few-shot: train on all classes of DATASET with SHOTS (1, 2, 4, 8, 16) images per
# class, for each seed of SEEDS (default "1 2 3").
# Usage: DATA=/path/to/datasets bash scripts/promptsrc/few_shot.sh DATASET SHOTS
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: few_shot.sh DATASET SHOTS" >&2; exit 2; }
for SEED in ${SEEDS:-1 2 3}; do
    bash "$(dirname "${BASH_SOURCE[0]}")/../protocols/few_shot.sh" PromptSRC \
        "${CFG:-vit_b16_c2_ep50_batch4_4+4ctx_few_shot}" "$1" "$2" "$SEED"
done
