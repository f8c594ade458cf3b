#!/bin/bash
# PromptSRC, cross-dataset / domain generalization: evaluate the ImageNet model on DATASET.
# Usage: DATA=/path/to/datasets bash scripts/promptsrc/xd_test.sh DATASET SEED
# CFG=<config name> picks another config of configs/trainers/PromptSRC/; see scripts/common.sh.
WRAPPER="${BASH_SOURCE[0]}" exec bash "$(dirname "${BASH_SOURCE[0]}")/../protocols/xd_test.sh" PromptSRC "${CFG:-vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets}" "$@"
