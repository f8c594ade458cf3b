#!/bin/bash
# MVLPT source prompts (the official arguments): train TRAINER jointly on CoOp's 11 datasets.
#   TRAINER  CoOp (MCoOp), VPT (MVPT), UPT (MUPT) or COCOOP (MCoCoOp)
#   CFG      config of configs/trainers/MVLPT/ (vit_b16 in the paper)
#   NCTX     prompt tokens (16 for MCoOp and MVPT, 4 for MUPT in the paper)
#   SHOTS    images per class (1, 5, 20)
#   SEED     the seed
#   DATA     folder holding the datasets (default: $DATA)
#   OUTPUT   output root (default: $OUTPUT, else output)
# TASKS=A,B,... changes the source tasks. Output:
# OUTPUT/<tasks>/TRAINER/CFG_SHOTSshots/nctxNCTX_csc_ctp/seedSEED
# Usage: bash scripts/mvlpt/main_mt_coopdata_cut.sh TRAINER CFG NCTX SHOTS SEED [DATA [OUTPUT]]
set -euo pipefail
[ $# -ge 5 ] && [ $# -le 7 ] || {
    echo "usage: main_mt_coopdata_cut.sh TRAINER CFG NCTX SHOTS SEED [DATA [OUTPUT]]" >&2; exit 2; }
[ $# -ge 6 ] && export DATA=$6
[ $# -ge 7 ] && export OUTPUT=$7
WRAPPER="${BASH_SOURCE[0]}" exec bash "$(dirname "${BASH_SOURCE[0]}")/../protocols/multitask.sh" "$1" "$2" "$3" "$4" "$5"
