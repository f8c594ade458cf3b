#!/bin/bash
# Deep language prompting (IVLP, text only), base-to-novel: evaluate the base-class model on the new (or base) classes of DATASET.
# Usage: DATA=/path/to/datasets bash scripts/language-prompting/base2new_test_lp.sh DATASET SEED [new|base]
# CFG=<config name> picks another config of configs/trainers/IVLP/; see scripts/common.sh.
WRAPPER="${BASH_SOURCE[0]}" exec bash "$(dirname "${BASH_SOURCE[0]}")/../protocols/base2new_test.sh" IVLP "${CFG:-vit_b16_c2_ep5_batch4_4ctx_language_only}" "$@"
