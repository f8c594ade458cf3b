from __future__ import annotations

import pytest

from engine.config import get_cfg_default
from tests.engine.toy import make_image_folder


@pytest.fixture
def image_root(tmp_path):
    return make_image_folder(str(tmp_path / "data"))


@pytest.fixture
def toy_cfg(image_root, tmp_path):
    """A config for ToyTrainer on the generated image folder (CPU, seconds)."""
    cfg = get_cfg_default()
    cfg.merge_from_list([
        "DATASET.ROOT", image_root, "DATASET.NAME", "ToyFolder", "TRAINER.NAME", "ToyTrainer",
        "OUTPUT_DIR", str(tmp_path / "out"), "SEED", "1", "USE_CUDA", "False",
        "INPUT.SIZE", "(8, 8)", "INPUT.TRANSFORMS", "('random_resized_crop', 'random_flip', "
        "'normalize')", "INPUT.INTERPOLATION", "bicubic",
        "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "4",
        "DATALOADER.TEST.BATCH_SIZE", "5", "OPTIM.NAME", "sgd", "OPTIM.LR", "0.05",
        "OPTIM.MAX_EPOCH", "4", "OPTIM.LR_SCHEDULER", "cosine", "OPTIM.WARMUP_EPOCH", "1",
        "OPTIM.WARMUP_TYPE", "constant", "OPTIM.WARMUP_CONS_LR", "0.01",
        "TRAIN.PRINT_FREQ", "2", "TRAIN.CHECKPOINT_FREQ", "1", "VERBOSE", "False",
    ])
    return cfg
