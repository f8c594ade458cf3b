#!/bin/bash
# Starts a Python script under torchrun. The protocol scripts run "$PYTHON train.py ...", so
# PYTHON=scripts/torchrun.sh runs train.py as one process per GPU, over one or several nodes.
# The sweep sets it for Slurm jobs with several GPUs or nodes (scripts/run_job.py).
#   TORCHRUN_ARGS    torchrun's options, shell-quoted, e.g.
#                    '--nnodes 2 --nproc_per_node 4 --rdzv_backend c10d --rdzv_endpoint host:29400'
#   TORCHRUN_PYTHON  the interpreter (default: python)
set -euo pipefail
eval "ARGS=(${TORCHRUN_ARGS:-})" || { echo "error: TORCHRUN_ARGS is not a list of words: ${TORCHRUN_ARGS}" >&2; exit 2; }
exec "${TORCHRUN_PYTHON:-python}" -m torch.distributed.run ${ARGS[@]+"${ARGS[@]}"} "$@"
