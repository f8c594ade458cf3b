#!/bin/bash
# CoPrompt, base-to-novel: evaluate the base-class model on the new (or base) classes of DATASET.
# Usage: DATA=/path/to/datasets bash scripts/coprompt/base2new_test_coprompt.sh DATASET SEED [new|base]
# The official script takes the epoch as a fourth argument; here LOADEP (default: the config's
# last epoch, Food101's 5 included when EXTRA_OPTS sets it). CFG: see scripts/common.sh.
case ${1:-} in food101) export LOADEP=${LOADEP:-5} ;; esac  # its official 5 epochs
WRAPPER="${BASH_SOURCE[0]}" exec bash "$(dirname "${BASH_SOURCE[0]}")/../protocols/base2new_test.sh" CoPrompt "${CFG:-coprompt}" "$@"
