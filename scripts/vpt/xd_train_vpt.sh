#!/bin/bash
# Deep vision prompting (VPT), cross-dataset / domain generalization: train on all classes of DATASET (default imagenet), 16 shots.
# Usage: DATA=/path/to/datasets bash scripts/vpt/xd_train_vpt.sh [DATASET] SEED
# CFG=<config name> picks another config of configs/trainers/VPT/; see scripts/common.sh.
WRAPPER="${BASH_SOURCE[0]}" exec bash "$(dirname "${BASH_SOURCE[0]}")/../protocols/xd_train.sh" VPT "${CFG:-vit_b16_c2_ep5_batch4_4}" "$@"
