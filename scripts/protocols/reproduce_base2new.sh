#!/bin/bash
# Base-to-novel with published weights: evaluate WEIGHTSPATH/base/seedSEED on the base and on
# the new classes of DATASET (into test_base/ and test_new/ of $OUTPUT/base2new).
# Environment: see scripts/common.sh.
set -euo pipefail
HERE="$(dirname "${BASH_SOURCE[0]}")"
source "$HERE/../common.sh"
[ $# -eq 5 ] || usage "reproduce_base2new.sh TRAINER CFG DATASET SEED WEIGHTSPATH"
[ -d "$5" ] || die "WEIGHTSPATH=$5 is not a directory (unzip the downloaded weights there)."
export MODEL_DIR="$5/base/seed$4"
for SUB in base new; do
    bash "$HERE/base2new_test.sh" "$1" "$2" "$3" "$4" "$SUB"
done
