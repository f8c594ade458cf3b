# The ELEVATER protocol of MVLPT, shared by scripts/mvlpt/main_*_elevater_cut.sh (sourced, not
# run): the train.py arguments per prompt type, the loader settings, dry runs, the finished check.
# shellcheck source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

# Source tasks of the prompts that the single-task runs start from (MVLPT's CoOp-data run).
PRETRAIN_DATASET="ImageNet,Caltech101,Food101,StanfordCars,OxfordPets,OxfordFlowers,FGVCAircraft,SUN397,DescribableTextures,EuroSAT,UCF101"

# prompt_opts TRAINER NCTX -> array PROMPT: the config overrides of each branch of the
# official scripts (UPT, VPT, COCOOP; any other name is CoOp, as upstream).
prompt_opts() {
    local common=(TEST.NO_TEST False TEST.FINAL_MODEL best_val)
    local coop=(TRAINER.MVLPT.COOP.CLASS_TOKEN_POSITION middle TRAINER.MVLPT.COOP.CSC False)
    case "$1" in
        UPT) PROMPT=(TRAINER.MVLPT.VPT.N_CTX "$2" TRAINER.MVLPT.COOP.N_CTX "$2" "${coop[@]}"
                     "${common[@]}" TRAINER.CUT_CONTEXTLEN True) ;;
        VPT) PROMPT=(TRAINER.MVLPT.VPT.N_CTX "$2" TRAINER.MVLPT.COOP.N_CTX 0 "${coop[@]}"
                     "${common[@]}") ;;
        COCOOP) PROMPT=(TRAINER.MVLPT.COCOOP.N_CTX "$2" "${common[@]}") ;;
        *) PROMPT=(TRAINER.MVLPT.VPT.N_CTX 0 TRAINER.MVLPT.COOP.N_CTX "$2" "${coop[@]}"
                   "${common[@]}" TRAINER.CUT_CONTEXTLEN True) ;;
    esac
}

# require_elevater_task NAME: fail with the list of ELEVATER's tasks unless NAME is one.
require_elevater_task() {
    local names  # the keys of the class-name table, one task per line
    names="$(sed -n 's/^  "\([^"]*\)": .*/\1/p' "$REPO_ROOT/datasets/elevater_classnames.json" | tr '\n' ' ')"
    if [[ " $names " != *" $1 "* ]]; then
        die "'$1' is not an ELEVATER task; ELEVATER's 20 tasks: $names"
    fi
}

# mvlpt_config CFG -> configs/trainers/MVLPT/CFG.yaml (checked, except in a dry run)
mvlpt_config() {
    if dry_run; then
        echo "$REPO_ROOT/configs/trainers/MVLPT/$1.yaml"
    else
        trainer_config MVLPT "$1"
    fi
}

# elevater_finished DIR: true when a log of DIR holds an ELEVATER result after training.
elevater_finished() {
    local logs=("$1"/log.txt*)
    [ -e "${logs[0]}" ] || return 1
    awk 'FNR == 1 { after = 0 }
         /^(Finish training|Finished training)$/ { after = 1 }
         after && /^\* (accuracy|mean-per-class|11point_mAP|average): [-+.0-9eE]+%/ { found = 1 }
         END { exit !found }' "${logs[@]}"
}

# run_elevater DIR ARGS...: train.py --root DATA --output-dir DIR ARGS... EXTRA..., unless DIR
# holds a result (FORCE=1 runs again); DRY_RUN=1 prints the command only.
run_elevater() {
    local dir=$1
    shift
    if [ "${FORCE:-0}" != "1" ] && ! dry_run && elevater_finished "$dir"; then
        echo "Results are available in $dir. Skip this job (FORCE=1 runs it again)."
        return
    fi
    run_train_py --output-dir "$dir" "$@"
}
