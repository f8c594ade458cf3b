#!/bin/bash
# DePT, base-to-novel: evaluate VARIANT, trained by base2new_train.sh, on the new (SUB=new,
# default) or base classes of DATASET.
# VARIANT: DePT's official run names, coop_dept, cocoop_dept, kgcoop_dept or maple_dept (its
# parallel_runner.py --cfg), each an official trainer and config; CFG=<config name> picks another.
# Usage: DATA=/path/to/datasets bash scripts/dept/base2new_test.sh VARIANT DATASET SEED
case "${1:-}" in
    coop_dept) T=ExtrasLinearProbeCoOp C=vit_b16_ep10_bs4_lr35 ;; cocoop_dept) T=ExtrasLinearProbeCoCoOp C=vit_b16_c4_ep10_batch1_ctxv1 ;;
    kgcoop_dept) T=ExtrasLinearProbeKgCoOp C=vit_b16_ep10_ctxv1_bs4_lr35 ;; maple_dept) T=ExtrasLinearProbeMaPLe C=vit_b16_c2_ep10_batch4_2ctx ;;
    *) echo "usage: base2new_test.sh VARIANT DATASET SEED (VARIANT: coop_dept, cocoop_dept, kgcoop_dept, maple_dept)" >&2; exit 2 ;; esac
WRAPPER="${BASH_SOURCE[0]}" exec bash "$(dirname "${BASH_SOURCE[0]}")/../protocols/base2new_test.sh" "$T" "${CFG:-$C}" "${@:2}"
