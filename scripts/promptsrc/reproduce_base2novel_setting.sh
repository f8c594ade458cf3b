#!/bin/bash
# PromptSRC with the published base-to-novel weights: evaluate WEIGHTSPATH/base/seedSEED on the base
# and the new classes of DATASET.
# Usage: DATA=/path/to/datasets bash scripts/promptsrc/reproduce_base2novel_setting.sh DATASET SEED WEIGHTSPATH
WRAPPER="${BASH_SOURCE[0]}" exec bash "$(dirname "${BASH_SOURCE[0]}")/../protocols/reproduce_base2new.sh" PromptSRC "${CFG:-vit_b16_c2_ep20_batch4_4+4ctx}" "$@"
