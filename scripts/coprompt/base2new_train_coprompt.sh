#!/bin/bash
# CoPrompt, base-to-novel: train on the base classes of DATASET (16 shots) with SEED.
# Usage: DATA=/path/to/datasets bash scripts/coprompt/base2new_train_coprompt.sh DATASET SEED
# The class descriptions are read from TRAINER.CoPrompt.GPT_DIR (default ./gpt_file; set it with
# EXTRA_OPTS='TRAINER.CoPrompt.GPT_DIR /path/to/gpt_file'). CFG: see scripts/common.sh.
WRAPPER="${BASH_SOURCE[0]}" exec bash "$(dirname "${BASH_SOURCE[0]}")/../protocols/base2new_train.sh" CoPrompt "${CFG:-coprompt}" "$@"
