#!/bin/bash
# PromptSRC, base-to-novel: evaluate the base-class model on the new (or base) classes of DATASET.
# Usage: DATA=/path/to/datasets bash scripts/promptsrc/base2new_test.sh DATASET SEED [new|base]
# CFG=<config name> picks another config of configs/trainers/PromptSRC/; see scripts/common.sh.
WRAPPER="${BASH_SOURCE[0]}" exec bash "$(dirname "${BASH_SOURCE[0]}")/../protocols/base2new_test.sh" PromptSRC "${CFG:-vit_b16_c2_ep20_batch4_4+4ctx}" "$@"
