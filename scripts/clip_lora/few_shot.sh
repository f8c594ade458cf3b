#!/bin/bash
# CLIP-LoRA, few-shot (its main.py: train on SHOTS images per class of DATASET, default 16, then
# test on all classes), for each seed of SEEDS (default "1 2 3"). Its flags are config keys
# (RUN.md, section 8), e.g. EXTRA_OPTS='TRAINER.CLIPLORA.POSITION up TRAINER.CLIPLORA.R 4'.
# Usage: DATA=/path/to/datasets bash scripts/clip_lora/few_shot.sh DATASET
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
[ $# -eq 1 ] || usage "few_shot.sh DATASET"
each_seed "$(dirname "${BASH_SOURCE[0]}")/../protocols/few_shot.sh" CLIPLoRA "${CFG:-vit_b16}" "$1" "${SHOTS:-16}"
