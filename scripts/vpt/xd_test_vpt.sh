#!/bin/bash
# Deep vision prompting (VPT), cross-dataset / domain generalization: evaluate the ImageNet model on DATASET.
# Usage: DATA=/path/to/datasets bash scripts/vpt/xd_test_vpt.sh DATASET SEED
# CFG=<config name> picks another config of configs/trainers/VPT/; see scripts/common.sh.
WRAPPER="${BASH_SOURCE[0]}" exec bash "$(dirname "${BASH_SOURCE[0]}")/../protocols/xd_test.sh" VPT "${CFG:-vit_b16_c2_ep5_batch4_4}" "$@"
