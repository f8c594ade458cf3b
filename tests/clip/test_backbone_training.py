"""Methods on other backbones, through the engine: MaPLe and PromptSRC on open_clip's tiny GELU
model (32-channel heads, towers of different widths, its own normalisation), CoOp on a
tiny ResNet; and the errors of a configuration that does not fit its backbone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import trainers  # noqa: F401  (registers the trainers and their config nodes)
from clip.backbones import OPENAI_MEAN, OPENAI_STD
from engine.config import get_cfg_default
from engine.utils import set_random_seed
from tests.clip import open_clip_models

open_clip = pytest.importorskip("open_clip")

HALF = "[0.5, 0.5, 0.5]"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
    from tests.engine.toy import make_image_folder

    root = tmp_path_factory.mktemp("backbones")
    open_clip_models.tiny_open_clip_folder(root / "tiny-gelu")
    return {"images": make_image_folder(str(root / "data"), per_class=2),
            "gelu": str(root / "tiny-gelu")}


def engine_cfg(data: dict[str, str], trainer: str, backbone: str, *opts: str):
    from tests.engine.toy import ToyFolder  # noqa: F401  (registers the toy dataset)

    cfg = get_cfg_default()
    cfg.merge_from_list([
        "DATASET.ROOT", data["images"], "DATASET.NAME", "ToyFolder", "TRAINER.NAME", trainer,
        "MODEL.BACKBONE.NAME", backbone, "INPUT.SIZE", "(32, 32)",
        "INPUT.TRANSFORMS", "['normalize']", "INPUT.INTERPOLATION", "bicubic",
        "OUTPUT_DIR", data["images"] + "/out", "SEED", "1", "USE_CUDA", "False",
        "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "6",
        "OPTIM.NAME", "sgd", "OPTIM.LR", "0.002", "VERBOSE", "False", *opts])
    cfg.freeze()
    set_random_seed(1)  # as train.py does: the prompts start the same every run
    return cfg


def steps(trainer, count: int = 5) -> list[float]:
    """The losses of ``count`` training steps on one batch."""
    batch = next(iter(trainer.train_loader_x))
    trainer.batch_idx, trainer.num_batches = 0, 10 ** 6  # no learning-rate step
    trainer.set_model_mode("train")
    return [trainer.forward_backward(batch)["loss"] for _ in range(count)]


def check_training(trainer, text_width: int, vision_width: int) -> None:
    clip_model = trainer.clip_model
    before = clip_model.identity()
    learner = trainer.model.prompt_learner
    initial = {k: v.clone() for k, v in learner.state_dict().items()}
    losses = steps(trainer)
    assert losses[-1] < losses[0] - 1e-3
    assert any(not torch.equal(v, learner.state_dict()[k]) for k, v in initial.items())
    assert clip_model.identity() == before  # the backbone stays frozen
    assert (clip_model.text_width, clip_model.vision_width) == (text_width, vision_width)


@pytest.mark.parametrize("trainer_name, opts", [
    ("MaPLe", ["TRAINER.MAPLE.PROMPT_DEPTH", "2", "TRAINER.MAPLE.PREC", "fp32"]),
    ("PromptSRC", ["TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", "3",
                   "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", "2", "TRAINER.PROMPTSRC.PREC", "fp32"]),
])
def test_deep_methods_train_on_an_open_clip_gelu_backbone(data, trainer_name, opts) -> None:
    from engine.trainer import build_trainer

    cfg = engine_cfg(data, trainer_name, data["gelu"], "INPUT.PIXEL_MEAN", HALF,
                     "INPUT.PIXEL_STD", HALF, *opts)
    trainer = build_trainer(cfg)
    arch = trainer.clip_model.backbone.arch
    assert (arch.activation, arch.vision_heads, arch.text_heads) == ("gelu", 4, 2)
    assert all(isinstance(block.mlp.gelu, nn.GELU)
               for block in trainer.clip_model.visual.transformer.resblocks)
    check_training(trainer, text_width=64, vision_width=128)
    schedule = trainer.model.prompt_learner()
    assert [p.shape[-1] for p in schedule.vision] == [128, 128]


def test_coop_trains_on_a_resnet(data) -> None:
    from engine.trainer import build_trainer

    cfg = engine_cfg(data, "CoOp", "tiny-resnet", "INPUT.PIXEL_MEAN", str(list(OPENAI_MEAN)),
                     "INPUT.PIXEL_STD", str(list(OPENAI_STD)), "TRAINER.COOP.N_CTX", "4",
                     "TRAINER.COOP.PREC", "fp32")
    trainer = build_trainer(cfg)
    assert trainer.clip_model.backbone.name == "tiny-resnet"
    check_training(trainer, text_width=64, vision_width=256)


def test_a_configuration_that_does_not_fit_the_backbone_is_refused(data, tmp_path) -> None:
    from engine.trainer import build_trainer

    maple = ["TRAINER.MAPLE.PROMPT_DEPTH", "2", "TRAINER.MAPLE.PREC", "fp32"]
    openai_stats = ["INPUT.PIXEL_MEAN", str(list(OPENAI_MEAN)),
                    "INPUT.PIXEL_STD", str(list(OPENAI_STD))]
    with pytest.raises(ValueError, match=r"INPUT.PIXEL_MEAN is .*trained with \[0.5, 0.5, 0.5\]"):
        build_trainer(engine_cfg(data, "MaPLe", data["gelu"], *openai_stats, *maple))
    cfg = engine_cfg(data, "MaPLe", data["gelu"], "INPUT.PIXEL_MEAN", HALF, "INPUT.PIXEL_STD",
                     HALF, *maple)
    cfg.defrost()
    cfg.INPUT.SIZE = (64, 64)
    with pytest.raises(ValueError, match=r"INPUT.SIZE is \(64, 64\); .* needs \(32, 32\)"):
        build_trainer(cfg)
    weights = tmp_path / "weights.pt"
    torch.save(open_clip_models.tiny_open_clip_folder(tmp_path / "t").state_dict(), weights)
    with pytest.raises(ValueError, match="bare state dict.*MODEL.BACKBONE.ARCH"):
        build_trainer(engine_cfg(data, "MaPLe", str(weights), *openai_stats, *maple))
    with pytest.raises(ValueError, match="MaPLe prompts the vision tower.*ResNet"):
        build_trainer(engine_cfg(data, "MaPLe", "tiny-resnet", *openai_stats, *maple))


def test_activation_count_reads_the_backbones_activation() -> None:
    """benchmarks.activations on a backbone counts what its activation saves: the fused
    QuickGELU (clip.model.quick_gelu) keeps one [batch, tokens, 4 x width] tensor, as GELU
    does, so VPT's counts on tiny (QuickGELU) and tiny-gelu agree; QuickGELU written out as
    ``x * sigmoid(1.702 x)`` (``speedups(fused_quick_gelu=False)``) keeps its sigmoid as well:
    one more such fp32 tensor per vision block."""
    from benchmarks import activations
    from benchmarks.workload import trainer_config
    from clip.model import speedups

    quick, gelu = activations.backbone_scale("tiny"), activations.backbone_scale("tiny-gelu")

    def count(scale) -> int:
        return activations.measure("VPT", scale, scale.build_clip(), 4, off=False)

    fused, plain_gelu = count(quick), count(gelu)
    with speedups(fused_quick_gelu=False):
        written_out = count(quick)
    cfg = trainer_config("VPT", quick, "fp32")
    tokens = 1 + (quick.image_resolution // quick.patch_size) ** 2 + cfg.TRAINER.VPT.N_CTX_VISION
    sigmoid = cfg.DATALOADER.TRAIN_X.BATCH_SIZE * tokens * 4 * quick.vision_width * 4
    assert fused == plain_gelu
    assert written_out - fused == quick.vision_layers * sigmoid
