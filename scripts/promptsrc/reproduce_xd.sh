#!/bin/bash
# PromptSRC with the published ImageNet weights: evaluate WEIGHTSPATH/seedSEED on DATASET
# (cross-dataset targets or ImageNet variants).
# Usage: DATA=/path/to/datasets bash scripts/promptsrc/reproduce_xd.sh DATASET SEED WEIGHTSPATH
WRAPPER="${BASH_SOURCE[0]}" exec bash "$(dirname "${BASH_SOURCE[0]}")/../protocols/reproduce_xd.sh" PromptSRC "${CFG:-vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets}" "$@"
