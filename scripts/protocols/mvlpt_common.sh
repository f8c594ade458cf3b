# MVLPT's variants and folders, shared by multitask.sh, multitask_average.sh and transfer.sh.
# This file is sourced, not run (after ../common.sh).
#
# Environment (besides scripts/common.sh's):
#   TASKS   the source tasks, registered dataset names separated by commas (default: CoOp's 11
#           datasets in the order of the official script)
#   SEEDS   the seeds to average (multitask_average.sh; default: 1 2 3)

TASKS="${TASKS:-ImageNet,Caltech101,Food101,StanfordCars,OxfordPets,OxfordFlowers,FGVCAircraft,SUN397,DescribableTextures,EuroSAT,UCF101}"

# variant_opts VARIANT NCTX -> array VARIANT_OPTS: the official scripts' config overrides.
# CoOp (MCoOp): text context; VPT (MVPT): visual prompts; UPT (MUPT): both; COCOOP (MCoCoOp).
variant_opts() {
    case "$1" in
        UPT) VARIANT_OPTS=(TRAINER.MVLPT.VPT.N_CTX "$2" TRAINER.MVLPT.COOP.N_CTX "$2"
                           TRAINER.MVLPT.COOP.CLASS_TOKEN_POSITION middle
                           TRAINER.MVLPT.COOP.CSC False TRAINER.CUT_CONTEXTLEN True) ;;
        VPT) VARIANT_OPTS=(TRAINER.MVLPT.VPT.N_CTX "$2" TRAINER.MVLPT.COOP.N_CTX 0
                           TRAINER.MVLPT.COOP.CLASS_TOKEN_POSITION middle
                           TRAINER.MVLPT.COOP.CSC False) ;;
        CoOp) VARIANT_OPTS=(TRAINER.MVLPT.VPT.N_CTX 0 TRAINER.MVLPT.COOP.N_CTX "$2"
                            TRAINER.MVLPT.COOP.CLASS_TOKEN_POSITION middle
                            TRAINER.MVLPT.COOP.CSC False TRAINER.CUT_CONTEXTLEN True) ;;
        COCOOP) VARIANT_OPTS=(TRAINER.MVLPT.COCOOP.N_CTX "$2") ;;
        *) die "unknown MVLPT variant '$1'; use CoOp (MCoOp), VPT (MVPT), UPT (MUPT) or COCOOP" ;;
    esac
    VARIANT_OPTS+=(TEST.NO_TEST False TEST.FINAL_MODEL best_val)
}

# run_tag VARIANT CFG NCTX SHOTS -> VARIANT/CFG_SHOTSshots/nctxNCTX_csc_ctp: the official
# folder (its CSC and CTP variables are never set, so they are empty in every official path).
run_tag() {
    echo "$1/${2}_${4}shots/nctx${3}_csc_ctp"
}
