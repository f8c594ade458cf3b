"""CoPrompt on the tiny CLIP: the adapters and the consistency terms against their formulas
computed another way, the description files (written by the tests), the official per-dataset
settings, two augmentations per image from the loader, and real training steps on the Demo
dataset."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import clip
import datasets  # noqa: F401  (registration)
import trainers  # noqa: F401  (registration)
from engine.config import get_cfg_default
from engine.errors import ConfigError
from engine.trainer import build_trainer
from trainers.coprompt import CoPrompt, two_view_losses, with_dataset_settings

CLASSNAMES = ["face", "sea_lion", "airplane", "anchor"]
LABELS = torch.tensor([0, 1, 2, 3])
SENTENCES = ["A {} seen from afar.", "A close photo of a {}.", "Something shaped like a {}."]


@pytest.fixture(scope="module")
def model():
    return clip.tiny_clip(seed=3).requires_grad_(False)


def images(seed: int) -> torch.Tensor:
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def write_descriptions(folder, stem: str = "caltech", names=CLASSNAMES) -> None:
    data = {n.replace("_", " "): [s.format(n) for s in SENTENCES] for n in names}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}_prompt.json").write_text(json.dumps(data))


def config(tmp_path, *opts: str):
    cfg = get_cfg_default()
    cfg.merge_from_list(["DATASET.NAME", "Caltech101", "TRAINER.CoPrompt.PROMPT_DEPTH", "2",
                         "TRAINER.CoPrompt.GPT_DIR", str(tmp_path),
                         "TRAINER.CoPrompt.DATASET_SETTINGS", "False", *opts])
    return cfg


def method_of(model, cfg):
    torch.manual_seed(0)
    learner = CoPrompt.make_prompt_learner(cfg, CLASSNAMES, model)
    for p in learner.parameters():  # adapters away from their zero-free start
        p.data.add_(0.05 * torch.randn_like(p))
    return CoPrompt.assemble(cfg, model, CLASSNAMES, learner)


def description_reference(model, k: int) -> torch.Tensor:
    prompts = [SENTENCES[k].format(n) for n in CLASSNAMES]
    return F.normalize(model.encode_text(clip.tokenize(prompts)), dim=-1)


@pytest.mark.parametrize("distill", ["cosine", "mse"])
def test_loss_is_ce_plus_w_times_both_consistencies_on_adapted_features(model, tmp_path,
                                                                        distill):
    write_descriptions(tmp_path)
    method = method_of(model, config(tmp_path, "TRAINER.W", "3.0", "TRAINER.DISTILL", distill))
    assert method.objective.names == ["ce", "text_consistency", "image_consistency"]
    method.objective["text_consistency"].choose = lambda k: 2
    first, second = images(1), images(2)
    losses = two_view_losses(method, [first, second], LABELS)

    learner, schedule = method.learner, method.learner()
    text = model.encode_text_embeddings(schedule.text_embeddings, schedule.eot, schedule.text)
    image = model.encode_image(first, schedule.vision)
    a_t, a_i = learner.adapter_text.fc, learner.adapter_image.fc
    text = F.normalize(0.2 * F.relu(a_t[2](F.relu(a_t[0](text)))) + 0.8 * text, dim=-1)
    image = F.normalize(0.1 * F.relu(a_i[2](F.relu(a_i[0](image)))) + 0.9 * image, dim=-1)
    frozen = F.normalize(model.encode_image(second), dim=-1)
    reference = description_reference(model, 2)
    if distill == "cosine":
        consistency = (2 - F.cosine_similarity(text, reference).mean()
                       - F.cosine_similarity(image, frozen).mean())
    else:
        consistency = ((text - reference) ** 2).mean() + ((image - frozen) ** 2).mean()
    logits = model.logit_scale.exp() * image @ text.t()
    expected = F.cross_entropy(logits, LABELS) + 3.0 * consistency
    torch.testing.assert_close(losses.total, expected)
    with torch.no_grad():
        torch.testing.assert_close(method.model(first), logits)
    assert min(v.item() for v in losses.terms.values()) > 1e-4  # every term counts


def test_description_index_is_drawn_per_step_with_pythons_random(model, tmp_path):
    write_descriptions(tmp_path)
    method = method_of(model, config(tmp_path))
    term = method.objective["text_consistency"]
    out = method.model.output(images(1))
    seen = {round(term(out, LABELS).item(), 6) for _ in range(30)}
    assert len(seen) == 3  # one value per description
    for k in range(3):
        term.choose = lambda n, k=k: k
        assert round(term(out, LABELS).item(), 6) in seen


def test_missing_or_wrong_description_files_are_one_line_errors(model, tmp_path):
    with pytest.raises(ConfigError, match=r"caltech_prompt\.json.*download.*GPT_DIR"):
        method_of(model, config(tmp_path / "none"))
    write_descriptions(tmp_path, names=CLASSNAMES[:3])
    with pytest.raises(ConfigError, match="no list of descriptions for the class 'anchor'"):
        method_of(model, config(tmp_path))
    data = json.loads((tmp_path / "caltech_prompt.json").read_text())
    data["anchor"] = ["one sentence"]
    (tmp_path / "caltech_prompt.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="different numbers of descriptions"):
        method_of(model, config(tmp_path))
    cfg = config(tmp_path, "TRAINER.DISTILL", "l1")
    with pytest.raises(ConfigError, match=r"TRAINER.DISTILL \(TRAINER.CoPrompt.DISTILL\) is 'l1"):
        CoPrompt.check_cfg(cfg)


def test_official_per_dataset_settings_override_the_config_unless_switched_off(tmp_path):
    cfg = config(tmp_path, "DATASET.NAME", "Food101", "TRAINER.CoPrompt.DATASET_SETTINGS",
                 "True", "TRAINER.W", "1.0")
    cfg.freeze()
    applied = with_dataset_settings(cfg)
    node = applied.TRAINER.CoPrompt
    assert (node.PROMPT_DEPTH, node.N_CTX, applied.TRAINER.CoPrompt.W, applied.OPTIM.MAX_EPOCH) == (
        9, 4, 0.5, 5)
    assert applied.is_frozen() and cfg.TRAINER.CoPrompt.W == 1.0
    cfg.defrost()
    cfg.TRAINER.CoPrompt.DATASET_SETTINGS = False
    assert with_dataset_settings(cfg) is cfg


def test_official_checkpoint_keys_map_onto_the_learner(model, tmp_path):
    write_descriptions(tmp_path)
    learner = method_of(model, config(tmp_path)).learner
    official = {"prompt_learner.ctx": learner.ctx, "prompt_learner.proj.weight":
                learner.couplings["0"].weight, "prompt_learner.proj.bias":
                learner.couplings["0"].bias, "prompt_learner.compound_prompts_text.0":
                learner.text_prompts["1"], **{
                    f"prompt_learner.compound_prompt_projections.0.{k}": v
                    for k, v in learner.couplings["1"].state_dict().items()},
                **{f"adapter_{s}.{k}": v for s in ("image", "text")
                   for k, v in getattr(learner, f"adapter_{s}").state_dict().items()},
                "prompt_learner.token_prefix": torch.zeros(1), "logit_scale": torch.ones(()),
                "model_distill.visual.proj": torch.zeros(1),
                "model_distill.token_embedding.weight": torch.zeros(1)}
    mapped = CoPrompt.learner_state_dict(official)
    assert mapped.keys() == learner.state_dict().keys()
    learner.load_state_dict(mapped, strict=True)


def test_trains_on_demo_data_with_two_augmentations_per_image(tmp_path):
    cfg = get_cfg_default()
    cfg.merge_from_file("configs/datasets/demo.yaml")
    cfg.merge_from_file("configs/trainers/CoPrompt/demo_tiny.yaml")
    cfg.merge_from_list([
        "DATASET.ROOT", str(tmp_path / "data"), "OUTPUT_DIR", str(tmp_path / "out"),
        "TRAINER.NAME", "CoPrompt", "SEED", "1", "USE_CUDA", "False", "OPTIM.MAX_EPOCH", "1",
        "DATASET.NUM_SHOTS", "1", "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "TEST.NO_TEST", "True",
        "VERBOSE", "False", "OPTIM.LR", "0.05", "INPUT.TRANSFORMS",
        "['random_resized_crop', 'normalize']"])
    trainer = build_trainer(cfg)
    batch = next(iter(trainer.train_loader_x))
    assert isinstance(batch["img"], list) and len(batch["img"]) == 2
    assert not torch.equal(batch["img"][0], batch["img"][1])  # independent augmentations
    assert trainer.objective.names == ["ce", "text_consistency", "image_consistency"]
    trained = trainer._models[trainer.model_name]
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    trainer.train()
    after = trained.state_dict()
    assert all(not torch.equal(after[k], v) for k, v in before.items())
    saved = torch.load(tmp_path / "out" / "MultiModalPromptLearner" / "model.pth.tar-1",
                       weights_only=True)
    assert saved["state_dict"].keys() == after.keys()
    assert any(k.startswith("adapter_image.") for k in after)
