#!/bin/bash
# Deep language prompting (IVLP, text only), cross-dataset / domain generalization: train on all classes of DATASET (default imagenet), 16 shots.
# Usage: DATA=/path/to/datasets bash scripts/language-prompting/xd_train_lp.sh [DATASET] SEED
# CFG=<config name> picks another config of configs/trainers/IVLP/; see scripts/common.sh.
WRAPPER="${BASH_SOURCE[0]}" exec bash "$(dirname "${BASH_SOURCE[0]}")/../protocols/xd_train.sh" IVLP "${CFG:-vit_b16_c2_ep5_batch4_4ctx_language_only}" "$@"
