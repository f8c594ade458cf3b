# Sourced by the TCP scripts with the dataset name: the official command-line values in
# EXTRA_OPTS (before any the caller set), with the official epoch override of ImageNet and SUN397.
epochs=""
case $1 in
    imagenet|sun397) epochs="OPTIM.MAX_EPOCH 25" ;;
esac
export EXTRA_OPTS="TRAINER.COOP.N_CTX 4 TRAINER.COOP.CSC False TRAINER.COOP.W 1.0 TRAINER.COOP.CLASS_TOKEN_POSITION end $epochs ${EXTRA_OPTS:-}"
