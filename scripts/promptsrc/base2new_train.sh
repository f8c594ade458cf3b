#!/bin/bash
# PromptSRC, base-to-novel: train on the base classes of DATASET (16 shots) with SEED.
# Usage: DATA=/path/to/datasets bash scripts/promptsrc/base2new_train.sh DATASET SEED
# CFG=<config name> picks another config of configs/trainers/PromptSRC/; see scripts/common.sh.
WRAPPER="${BASH_SOURCE[0]}" exec bash "$(dirname "${BASH_SOURCE[0]}")/../protocols/base2new_train.sh" PromptSRC "${CFG:-vit_b16_c2_ep20_batch4_4+4ctx}" "$@"
