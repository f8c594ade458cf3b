#!/bin/bash
# MVLPT: average the source prompts of the seeds SEEDS (default 1 2 3) of
# main_mt_coopdata_cut.sh TRAINER CFG NCTX SHOTS, into the folder main_single_coopdata_cut.sh
# reads (the official scripts/avg_ckpt.py with its paths as arguments).
# Usage: bash scripts/mvlpt/avg_ckpt.sh TRAINER CFG NCTX SHOTS [OUTPUT]
set -euo pipefail
[ $# -ge 4 ] && [ $# -le 5 ] || {
    echo "usage: avg_ckpt.sh TRAINER CFG NCTX SHOTS [OUTPUT]" >&2; exit 2; }
[ $# -ge 5 ] && export OUTPUT=$5
WRAPPER="${BASH_SOURCE[0]}" exec bash "$(dirname "${BASH_SOURCE[0]}")/../protocols/multitask_average.sh" "$1" "$2" "$3" "$4"
