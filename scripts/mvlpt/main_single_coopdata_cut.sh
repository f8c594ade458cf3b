#!/bin/bash
# MVLPT target (the official arguments): train TRAINER on DATASET, initialised with the source
# prompts averaged over seeds (scripts/mvlpt/avg_ckpt.sh), as the official script does with
# --model-dir. MODEL_DIR=/path overrides the source, MODEL_DIR=none trains from scratch.
#   TRAINER CFG NCTX SHOTS SEED  as in main_mt_coopdata_cut.sh
#   DATASET  the target: a registered dataset name (Caltech101, OxfordPets, ..., see DATASETS.md)
#   DATA, OUTPUT  as in main_mt_coopdata_cut.sh
# Output: OUTPUT/DATASET/TRAINER/CFG_SHOTSshots/nctxNCTX_csc_ctp/seedSEED (_scratch or
#         _from-<hash> after nctxNCTX_csc_ctp when MODEL_DIR is none or another folder)
# Usage: bash scripts/mvlpt/main_single_coopdata_cut.sh TRAINER CFG NCTX SHOTS SEED DATASET \
#            [DATA [OUTPUT]]
set -euo pipefail
[ $# -ge 6 ] && [ $# -le 8 ] || {
    echo "usage: main_single_coopdata_cut.sh TRAINER CFG NCTX SHOTS SEED DATASET [DATA [OUTPUT]]" >&2
    exit 2; }
[ $# -ge 7 ] && export DATA=$7
[ $# -ge 8 ] && export OUTPUT=$8
WRAPPER="${BASH_SOURCE[0]}" exec bash "$(dirname "${BASH_SOURCE[0]}")/../protocols/transfer.sh" "$1" "$2" "$3" "$4" "$5" "$6"
