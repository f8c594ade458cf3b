# Shared by the protocol scripts in scripts/protocols/ (and the demos): paths, checks and the train.py call.
# This file is sourced, not run.
#
# Environment (all optional except DATA):
#   DATA        folder holding the datasets (required)
#   OUTPUT      output root (default: output, relative to the current directory, as upstream)
#   SHOTS       images per class for training (default: 16)
#   EXTRA_OPTS  extra KEY VALUE overrides for train.py, shell-quoted,
#               e.g. EXTRA_OPTS='OPTIM.MAX_EPOCH 2 OPTIM.LR 0.01'
#   CFG         (per-method scripts) another config of configs/trainers/<Trainer>/;
#               CFG=demo_tiny is each trainer's demo (tiny random CLIP, CPU, no download):
#               DATA=data CFG=demo_tiny bash scripts/maple/base2new_train_maple.sh demo 1
#   LOADEP      epoch of the checkpoint to evaluate (default: OPTIM.MAX_EPOCH of the config,
#               or of EXTRA_OPTS when given there)
#   MODEL_DIR   model to evaluate (default: where the matching training wrote it);
#               "none" evaluates without loading anything (zero-shot CLIP)
#   CFG_TRAINER folder of configs/trainers/ holding CFG (default: the trainer name)
#   RUN_TAG     extra folder level between <cfg>_<shots>shots and seed<N> (CoOp's nctx.. tag)
#   PYTHON      interpreter (default: python)
#   FORCE=1     run again even when the output folder already holds a result
#   DRY_RUN=1   print the train.py commands instead of running them; the checks of what an
#               earlier step leaves (checkpoints, source prompts) and of the DATA folder's
#               existence are skipped, so a whole protocol can be printed before any of it runs

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
OUTPUT="${OUTPUT:-output}"
SHOTS="${SHOTS:-16}"
TRAIN_END="Finish training|Finished training"  # alternatives, split at '|' (older Dassl)
TEST_END="=> result"

die() {
    echo "error: $*" >&2
    exit 2
}

# A per-method script (scripts/<method>/*.sh) runs a protocol script with WRAPPER set to its
# own path, so that a wrong call is answered with the per-method script's "# Usage:" line.
CALLED_AS="${WRAPPER:-}"
unset WRAPPER  # not passed on to the scripts this one runs

usage() {
    local line=""
    if [ -n "$CALLED_AS" ] && [ -r "$CALLED_AS" ]; then
        line=$(sed -n 's/^# Usage: *//p' "$CALLED_AS" | head -n 1 | sed 's/ *\\$//')
    fi
    echo "usage: ${line:-$*}" >&2
    exit 2
}

# dry_run: true when DRY_RUN=1 (commands are printed, not run).
dry_run() {
    [ "${DRY_RUN:-0}" = "1" ]
}

require_data() {
    if [ -z "${DATA:-}" ]; then
        die "DATA is not set. Point it at the folder that holds the datasets, e.g." \
            "'export DATA=/path/to/datasets' (the official scripts hard-code it; here it is" \
            "an environment variable)."
    fi
    [ -d "$DATA" ] || dry_run || die "DATA=$DATA is not a directory; set DATA to the folder that holds the datasets."
}

# EXTRA_OPTS -> array EXTRA (quotes in EXTRA_OPTS group words, as in a shell command line).
load_extra_opts() {
    EXTRA=()
    if [ -n "${EXTRA_OPTS:-}" ]; then
        eval "EXTRA=(${EXTRA_OPTS})" || die "EXTRA_OPTS is not a valid list of KEY VALUE words: ${EXTRA_OPTS}"
    fi
    if [ $(( ${#EXTRA[@]} % 2 )) -ne 0 ]; then
        die "EXTRA_OPTS must hold KEY VALUE pairs; got ${#EXTRA[@]} words: ${EXTRA_OPTS}"
    fi
}

# list_yaml DIR -> names of the *.yaml files of DIR, without the extension
list_yaml() {
    local file names=()
    for file in "$1"/*.yaml; do
        [ -e "$file" ] && names+=("$(basename "$file" .yaml)")
    done
    echo "${names[*]:-}"
}

# trainer_config TRAINER_DIR CFG -> path of configs/trainers/TRAINER_DIR/CFG.yaml
trainer_config() {
    local file="$REPO_ROOT/configs/trainers/$1/$2.yaml"
    if [ ! -f "$file" ]; then
        local have
        have="$(list_yaml "$REPO_ROOT/configs/trainers/$1")"
        die "no config file configs/trainers/$1/$2.yaml; configs of $1: ${have:-none}"
    fi
    echo "$file"
}

# dataset_config DATASET -> path of configs/datasets/DATASET.yaml
dataset_config() {
    local file="$REPO_ROOT/configs/datasets/$1.yaml"
    if [ ! -f "$file" ]; then
        local have
        have="$(list_yaml "$REPO_ROOT/configs/datasets")"
        die "unknown dataset '$1' (no configs/datasets/$1.yaml); datasets: ${have:-none}"
    fi
    echo "$file"
}

# load_epoch CONFIG_FILE -> the epoch whose checkpoint a finished training left:
# LOADEP, else OPTIM.MAX_EPOCH from EXTRA, else OPTIM.MAX_EPOCH of the config file.
load_epoch() {
    if [ -n "${LOADEP:-}" ]; then
        echo "$LOADEP"
        return
    fi
    local i epoch=""
    for (( i = 0; i + 1 < ${#EXTRA[@]}; i += 2 )); do
        [ "${EXTRA[i]}" = "OPTIM.MAX_EPOCH" ] && epoch="${EXTRA[i + 1]}"
    done
    if [ -z "$epoch" ]; then
        epoch="$(awk '/^OPTIM:/ { in_optim = 1; next }
                      /^[^[:space:]#]/ { in_optim = 0 }
                      in_optim && $1 == "MAX_EPOCH:" { print $2 }' "$1" | tail -n 1)"
    fi
    [ -n "$epoch" ] || die "cannot tell the last epoch from $1 (no OPTIM.MAX_EPOCH); set LOADEP."
    echo "$epoch"
}

# require_checkpoint MODEL_DIR EPOCH: fail early, with the fix, when the model is missing.
require_checkpoint() {
    if dry_run; then
        return 0
    fi
    local found=("$1"/*/model.pth.tar-"$2")
    if [ ! -e "${found[0]}" ]; then
        die "no checkpoint $1/<model>/model.pth.tar-$2. Train it first (the matching" \
            "*_train script), or set MODEL_DIR / LOADEP to the model to evaluate."
    fi
}

# run_finished DIR SIGNALS: true when a log in DIR has an accuracy line after a line that
# equals one of SIGNALS ('|'-separated).
run_finished() {
    local logs=("$1"/log.txt*)
    [ -e "${logs[0]}" ] || return 1
    awk -v signals="$2" '
        BEGIN { n = split(signals, wanted, "|"); for (i = 1; i <= n; i++) is_signal[wanted[i]] = 1 }
        FNR == 1 { after = 0 }
        { line = $0; gsub(/^[ \t]+|[ \t\r]+$/, "", line) }
        line in is_signal { after = 1 }
        after && line ~ /\* accuracy: [-+.0-9eE]+%/ { found = 1 }
        END { exit !found }' "${logs[@]}"
}

# init_suffix MODEL_DIR DEFAULT -> the run-folder suffix of where a run's initial prompts come
# from: "" (DEFAULT, the protocol's source), _scratch (none), _from-<hash> (another folder).
init_suffix() {
    "$PYTHON" "$REPO_ROOT/scripts/init_source.py" suffix "$1" "$2"
}

# claim_init_source DIR MODEL_DIR: refuse DIR when its run started from another source (its
# result is not this run's); record MODEL_DIR in DIR/init_source.txt. Not in a dry run.
claim_init_source() {
    if dry_run; then
        return 0
    fi
    "$PYTHON" "$REPO_ROOT/scripts/init_source.py" claim "$1" "$2" || exit 2
}

# skip_if_finished DIR SIGNAL: exit 0 when DIR already holds a result (unless FORCE=1).
skip_if_finished() {
    if [ "${FORCE:-0}" != "1" ] && run_finished "$1" "$2"; then
        echo "Results are available in $1. Skip this job (FORCE=1 runs it again)."
        exit 0
    fi
    if [ -d "$1" ]; then
        echo "Found an unfinished run in $1. Resuming..."
    else
        echo "Run this job and save the output to $1"
    fi
}

# print_command WORDS...: "+ WORDS", each word shell-quoted where it needs quotes.
print_command() {
    local word line="+"
    for word in "$@"; do
        if [[ "$word" =~ ^[A-Za-z0-9_./,=:+-]+$ ]]; then
            line+=" $word"
        else
            line+=" $(printf '%q' "$word")"
        fi
    done
    echo "$line"
}

# demo_train ARGS...: python train.py ARGS... (the demos' call: no DATA check, no EXTRA_OPTS);
# under DRY_RUN=1 only printed.
demo_train() {
    if dry_run; then
        print_command python train.py "$@"
    else
        python train.py "$@"
    fi
}

# last_accuracy RUN_DIR: the last "* accuracy: N%" of RUN_DIR/log.txt.
last_accuracy() {
    grep -o '\* accuracy: [0-9.]*%' "$1/log.txt" | tail -n 1 | cut -d' ' -f3
}

# run_train_py ARGS...: python train.py --root DATA ARGS... EXTRA..., printed first (only
# printed when DRY_RUN=1).
run_train_py() {
    print_command "$PYTHON" train.py --root "$DATA" "$@" "${EXTRA[@]}"
    if dry_run; then
        return 0
    fi
    "$PYTHON" "$REPO_ROOT/train.py" --root "$DATA" "$@" "${EXTRA[@]}"
}

# each_seed SCRIPT ARGS... -> bash SCRIPT ARGS... SEED for each seed of SEEDS (default "1 2 3")
each_seed() {
    local seed
    for seed in ${SEEDS:-1 2 3}; do
        bash "$@" "$seed"
    done
}
