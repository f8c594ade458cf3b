#!/bin/bash
# PromptSRC, cross-dataset / domain generalization: train on all classes of DATASET (default imagenet), 16 shots.
# Usage: DATA=/path/to/datasets bash scripts/promptsrc/xd_train.sh [DATASET] SEED
# CFG=<config name> picks another config of configs/trainers/PromptSRC/; see scripts/common.sh.
WRAPPER="${BASH_SOURCE[0]}" exec bash "$(dirname "${BASH_SOURCE[0]}")/../protocols/xd_train.sh" PromptSRC "${CFG:-vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets}" "$@"
