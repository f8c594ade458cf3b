"""Trainers on the feature cache (trainers/feature_cache.py): evaluation and training read
image features from disk with the same results as without the cache, images are not even read
when their features are cached, and the cache is refused, with its reason, where it cannot be
exact."""

from __future__ import annotations

import logging

import pytest
import torch

import datasets  # noqa: F401  (registration)
import trainers  # noqa: F401  (registration)
from engine.config import get_cfg_default
from engine.data.data_manager import DatasetWrapper
from engine.trainer import build_trainer
from engine.utils import set_random_seed


def demo_cfg(tmp_path, trainer: str, cache: bool, *opts: str):
    set_random_seed(1)  # the same initial prompts in every trainer built
    cfg = get_cfg_default()
    cfg.merge_from_file("configs/datasets/demo.yaml")
    cfg.merge_from_file(f"configs/trainers/{trainer}/demo_tiny.yaml")
    cfg.merge_from_list([
        "DATASET.ROOT", str(tmp_path / "data"), "OUTPUT_DIR", str(tmp_path / f"out{cache}"),
        "TRAINER.NAME", trainer, "SEED", "1", "USE_CUDA", "False", "OPTIM.MAX_EPOCH", "2",
        "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "DATALOADER.TEST.BATCH_SIZE", "7",
        "DATASET.NUM_SHOTS", "2", "INPUT.TRANSFORMS", "['normalize']",
        "FEATURE_CACHE.DIR", str(tmp_path / "cache") if cache else "", *opts])
    return cfg


def evaluate(trainer) -> torch.Tensor:
    outputs = []
    process = trainer.evaluator.process
    trainer.evaluator.process = lambda out, label: outputs.append(out) or process(out, label)
    trainer.test()
    return torch.cat(outputs)


@pytest.fixture
def loaded(monkeypatch) -> list[int]:
    """Indices of the images the loaders read."""
    seen = []
    real = DatasetWrapper.__getitem__
    monkeypatch.setattr(DatasetWrapper, "__getitem__",
                        lambda self, idx: seen.append(idx) or real(self, idx))
    return seen


@pytest.mark.parametrize("trainer", ["CoOp", "CoCoOp", "KgCoOp"])
def test_evaluation_reads_cached_features_with_the_same_logits(tmp_path, trainer, loaded,
                                                               caplog):
    plain = evaluate(build_trainer(demo_cfg(tmp_path, trainer, False)))
    cached = build_trainer(demo_cfg(tmp_path, trainer, True))
    with caplog.at_level(logging.INFO):
        first = evaluate(cached)
        count = first.shape[0]
        assert f"0 features read, {count} computed" in caplog.text
        loaded.clear()
        second = evaluate(cached)
        assert f"{count} features read, {count} computed" in caplog.text
    assert not loaded  # no image was read the second time
    again = evaluate(build_trainer(demo_cfg(tmp_path, trainer, True)))  # another run
    for logits in (first, second, again):
        assert torch.allclose(logits, plain, atol=1e-5, rtol=1e-5)


def test_training_from_cached_features_equals_training_from_images(tmp_path, caplog):
    results = {}
    for cache in (False, True, True):  # without; computing and storing; reading
        trainer = build_trainer(demo_cfg(tmp_path, "CoOp", cache, "OUTPUT_DIR",
                                         str(tmp_path / f"run{len(results)}")))
        with caplog.at_level(logging.INFO):
            trainer.train()
        results[len(results)] = trainer.model.prompt_learner.ctx.detach().clone()
    assert torch.allclose(results[0], results[1], atol=1e-6)
    assert torch.allclose(results[0], results[2], atol=1e-6)
    assert not torch.allclose(results[0], trainer.model.prompt_learner.ctx.new_zeros(1))
    assert "features read, " in caplog.text


@pytest.mark.parametrize("trainer, opts, reason", [
    ("CoOp", ["INPUT.TRANSFORMS", "['random_flip', 'normalize']"],
     "not used for train_loader_x: the training transform draws random augmentations "
     "(RandomHorizontalFlip)"),
    ("IVLP", [], "not used: the method prompts the image tower"),
    ("MaPLe", [], "not used: the method prompts the image tower"),
])
def test_the_cache_is_refused_where_it_cannot_be_exact(tmp_path, trainer, opts, reason,
                                                       caplog):
    with caplog.at_level(logging.INFO):
        built = build_trainer(demo_cfg(tmp_path, trainer, True, *opts))
    assert reason in caplog.text
    if trainer == "CoOp":  # the test loader still reads through the cache
        assert built.image_cache is not None
        assert type(built.test_loader.dataset).__name__ == "CachedItems"
        assert type(built.train_loader_x.dataset).__name__ == "DatasetWrapper"
    else:
        assert built.image_cache is None


def test_train_py_flag_sets_the_config_key_and_is_off_by_default(tmp_path):
    import train

    def cfg_of(*argv):
        return train.setup_cfg(train.build_parser().parse_args(
            ["--trainer", "CoOp", "--output-dir", str(tmp_path / "out"), *argv]))

    assert cfg_of().FEATURE_CACHE.DIR == ""
    assert cfg_of("--feature-cache", str(tmp_path / "c")).FEATURE_CACHE.DIR == str(tmp_path / "c")
    assert cfg_of("FEATURE_CACHE.DIR", "elsewhere").FEATURE_CACHE.DIR == "elsewhere"


def test_frozen_text_features_are_read_back_for_the_same_weights_only(tmp_path, caplog):
    import clip
    from trainers.feature_cache import text_feature_cache
    from trainers.objective import hand_crafted_text_features

    cfg = demo_cfg(tmp_path, "KgCoOp", True)
    names, templates = ["red", "green_blue"], ["a photo of a {}.", "a {} thing."]
    first, other = clip.tiny_clip(seed=0), clip.tiny_clip(seed=1)
    with text_feature_cache(cfg), caplog.at_level(logging.INFO):
        computed = hand_crafted_text_features(first, names, templates)
        assert "read from the feature cache" not in caplog.text
        again = hand_crafted_text_features(first, names, templates)
        assert caplog.text.count("read from the feature cache") == 1
        elsewhere = hand_crafted_text_features(other, names, templates)  # other weights
        fewer = hand_crafted_text_features(first, names, templates[:1])  # other prompts
        assert caplog.text.count("read from the feature cache") == 1
    assert torch.equal(computed, again)
    assert torch.allclose(computed, hand_crafted_text_features(first, names, templates))
    assert not torch.allclose(elsewhere, computed) and not torch.allclose(fewer, computed)
