#!/bin/bash
# Cross-dataset / domain generalization with published ImageNet weights: evaluate
# WEIGHTSPATH/seedSEED on DATASET (into $OUTPUT/evaluation/...).
# Environment: see scripts/common.sh.
set -euo pipefail
HERE="$(dirname "${BASH_SOURCE[0]}")"
source "$HERE/../common.sh"
[ $# -eq 5 ] || usage "reproduce_xd.sh TRAINER CFG DATASET SEED WEIGHTSPATH"
[ -d "$5" ] || die "WEIGHTSPATH=$5 is not a directory (unzip the downloaded weights there)."
MODEL_DIR="$5/seed$4" exec bash "$HERE/xd_test.sh" "$1" "$2" "$3" "$4"
