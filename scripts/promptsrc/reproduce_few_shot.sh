#!/bin/bash
# PromptSRC, few-shot with the published weights: evaluate WEIGHTSPATH/<SHOTS>shot/seed<N> on
# DATASET for each seed of SEEDS (default "1 2 3").
# Usage: DATA=/path/to/datasets bash scripts/promptsrc/reproduce_few_shot.sh DATASET SHOTS WEIGHTSPATH
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: reproduce_few_shot.sh DATASET SHOTS WEIGHTSPATH" >&2; exit 2; }
for SEED in ${SEEDS:-1 2 3}; do
    MODEL_DIR="$3/${2}shot/seed$SEED" bash "$(dirname "${BASH_SOURCE[0]}")/../protocols/few_shot.sh" \
        PromptSRC "${CFG:-vit_b16_c2_ep50_batch4_4+4ctx_few_shot}" "$1" "$2" "$SEED"
done
