#!/bin/bash
# Independent V-L prompting (IVLP), base-to-novel: train on the base classes of DATASET (16 shots) with SEED.
# Usage: DATA=/path/to/datasets bash scripts/independent-vlp/base2new_train_ivlp.sh DATASET SEED
# CFG=<config name> picks another config of configs/trainers/IVLP/; see scripts/common.sh.
WRAPPER="${BASH_SOURCE[0]}" exec bash "$(dirname "${BASH_SOURCE[0]}")/../protocols/base2new_train.sh" IVLP "${CFG:-vit_b16_c2_ep5_batch4_2+2ctx}" "$@"
