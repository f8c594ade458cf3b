"""The one contract of every part, checked for every registered part without new test code.

Every registered prompt learner is built alone and with each registered term, step hook,
epoch hook and head (one part beside the learner at a time: the pairs cover every part on
every learner, not every combination of parts), trains one step and evaluates on the tiny
CLIP. Then the declaration-level promises: official keys as aliases, keys nothing reads,
what checkpoints record, epoch hooks resumed mid-run, the listing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import clip
import trainers  # noqa: F401  (registration)
from engine.config import get_cfg_default
from engine.errors import CheckpointError, ConfigError
from engine.trainer import build_trainer
from tests.engine.toy import make_image_folder
from trainers.__main__ import lines
from trainers.learners import PROMPT_LEARNER_REGISTRY
from trainers.method import Method, assemble
from trainers.objective import HEAD_REGISTRY, STEP_HOOK_REGISTRY, TERM_REGISTRY
from trainers.parts import EPOCH_HOOK_REGISTRY

REPO = Path(__file__).resolve().parents[2]
CLASSNAMES = ["face", "leopard", "sea_lion", "airplane"]

# settings that fit the tiny CLIP (2 layers per tower); a learner not listed is built from its
# node's defaults, which must then fit the tiny CLIP too
TINY = {"CoOp": ["TRAINER.COOP.N_CTX", "2"], "CoCoOp": ["TRAINER.COCOOP.N_CTX", "2"],
        "IVLP": ["TRAINER.IVLP.PROMPT_DEPTH_TEXT", "2", "TRAINER.IVLP.PROMPT_DEPTH_VISION", "2"],
        "MaPLe": ["TRAINER.MAPLE.PROMPT_DEPTH", "2"],
        "CoPrompt": ["TRAINER.CoPrompt.PROMPT_DEPTH", "2"],
        "MVLPT": ["TRAINER.MVLPT.COOP.N_CTX", "2", "TRAINER.MVLPT.VPT.N_CTX", "2",
                  "TRAINER.MVLPT.PROJECT_DIM", "16"],
        "TCP": ["TRAINER.COOP.N_CTX", "4", "TRAINER.TCP.LAYER", "1"],
        "MultiModalAdapter": ["TRAINER.MMADAPTER.ADAPTER_START", "1",
                              "TRAINER.MMADAPTER.ADAPTER_END", "2"]}


def pairs() -> list[tuple[str, str, str]]:
    """(learner, kind, part) for every learner alone and with every other part."""
    # PromptKD's term distils from a PromptSRC-prompted teacher read from its checkpoint:
    # tests/trainers/test_promptkd.py runs it (and on MaPLe's prompts)
    parts = [("term", name) for name in TERM_REGISTRY if name not in ("CE", "PromptKD")]
    parts += [("step hook", name) for name in STEP_HOOK_REGISTRY]
    parts += [("epoch hook", name) for name in EPOCH_HOOK_REGISTRY]
    parts += [("head", name) for name in HEAD_REGISTRY]
    return [(learner, kind, part) for learner in PROMPT_LEARNER_REGISTRY
            for kind, part in [("", "")] + parts]


def declaration(learner: str, kind: str, part: str) -> Method:
    fields = {"term": {"terms": ("CE", part)}, "step hook": {"step_hooks": (part,)},
              "epoch hook": {"epoch_hooks": (part,)}, "head": {"head": part}}.get(kind, {})
    needs = ("labelled", "unlabelled", "teacher") if part == "Distill" else ("labelled",)
    if part == "MultitaskCE":
        fields = {"terms": ("MultitaskCE",)}
    return Method(f"Contract{learner}{part}", node=PROMPT_LEARNER_REGISTRY.node_of(learner),
                  learner=learner, needs=needs, **fields)


@pytest.fixture(scope="module")
def backbone():
    return clip.tiny_clip(seed=3).requires_grad_(False)


def images(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def descriptions(tmp_path_factory) -> list[str]:
    """CoPrompt's class descriptions for CLASSNAMES (OxfordPets' file name), two per class."""
    folder = tmp_path_factory.mktemp("gpt_file")
    text = {n.replace("_", " "): [f"A photo of a {n}.", f"A {n} seen closely."]
            for n in CLASSNAMES}
    (folder / "oxford_pets_prompt.json").write_text(json.dumps(text))
    return ["TRAINER.CoPrompt.GPT_DIR", str(folder)]


@pytest.mark.parametrize("learner, kind, part", pairs())
def test_every_learner_with_every_part_builds_trains_a_step_and_evaluates(backbone, learner,
                                                                           kind, part,
                                                                           descriptions):
    cfg = get_cfg_default()
    cfg.merge_from_list([*TINY.get(learner, []), "DATASET.NAME", "OxfordPets",
                         "DATASET.SUBSAMPLE_CLASSES", "base", "OPTIM.MAX_EPOCH", "1",
                         "TRAINER.GPA.MEAN", "1", *descriptions])
    declared = declaration(learner, kind, part)
    teacher = clip.tiny_clip(seed=7).requires_grad_(False) if "teacher" in declared.needs \
        else None
    torch.manual_seed(0)
    method = assemble(declared, cfg, backbone, CLASSNAMES, teacher=teacher)
    before = {k: v.clone() for k, v in method.trained.state_dict().items()}
    optim = torch.optim.SGD(method.trained_parameters(), lr=1.0)
    method.model.train()
    unlabelled = images(2, seed=5) if "unlabelled" in declared.needs else None
    losses = method.losses(images(2, seed=1), torch.tensor([0, 3]), unlabelled)
    assert torch.isfinite(losses.total) and losses.total.requires_grad
    method.backward(losses, lambda loss: loss.backward())
    optim.step()
    after = method.trained.state_dict()
    assert any(not torch.equal(after[k], v) for k, v in before.items())  # it learned
    for hook in method.epoch_hooks:  # one epoch of one: the aggregate is that epoch's state
        hook.after_epoch(1, 1, method.trained)
        assert hook.state_dict()
    method.model.eval()
    with torch.no_grad():
        logits = method.model(images(3, seed=2))
    assert logits.shape == (3, len(CLASSNAMES)) and torch.isfinite(logits).all()
    assert method.learner_config  # what shaped the tensors, by config key


# --------------------------------------------------------------------------- keys


def test_official_keys_set_the_keys_of_the_parts_that_read_them():
    cfg = get_cfg_default()
    cfg.merge_from_file(str(REPO / "configs/trainers/KgCoOp/vit_b16_ep100_ctxv1_w8.yaml"))
    assert cfg.TRAINER.KGCOOP.W == 8.0 and "W" not in cfg.TRAINER.COOP
    cfg.merge_from_file(str(REPO / "configs/trainers/ProGrad/rn50.yaml"))
    assert (cfg.TRAINER.PROGRAD.NAME, cfg.TRAINER.PROGRAD.T) == ("prograd", 1.0)
    cfg.merge_from_file(str(REPO / "configs/trainers/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx_dept"
                                   ".yaml"))
    assert cfg.TRAINER.LINEAR_PROBE.LR_EXP == 6.5
    cfg.merge_from_list(["OPTIM.LR_EXP", "3.0", "TRAINER.COOP.W", "2.0", "LOSS.LAMBDA", "0.5",
                         "TRAINER.PROMPTSRC.GPA_MEAN", "7", "TRAINER.FILM.LINEAR_PROBE", "False"])
    assert (cfg.TRAINER.LINEAR_PROBE.LR_EXP, cfg.TRAINER.KGCOOP.W, cfg.TRAINER.PROGRAD.LAMBDA,
            cfg.TRAINER.GPA.MEAN, cfg.TRAINER.LINEAR_PROBE.FILM) == (3.0, 2.0, 0.5, 7, False)


def test_a_key_nothing_reads_is_refused_at_any_value_but_its_default():
    from engine.config import check_values

    cfg = get_cfg_default()
    cfg.merge_from_list(["DATASET.NAME", "Demo", "LOSS.GM", "False", "TRAINER.COOP.ALPHA", "1.0",
                         "INPUT.CUTOUT_N", "1"])
    check_values(cfg)  # the official configs' values (the defaults) load
    for key, value in (("LOSS.GM", "True"), ("TRAINER.COOP.ALPHA", "0.5"),
                       ("INPUT.CUTOUT_N", "3"), ("MODEL.HEAD.NAME", "mlp")):
        bad = cfg.clone()
        bad.merge_from_list([key, value])
        with pytest.raises(ConfigError, match=f"{key} is .*nothing reads it"):
            check_values(bad)


def test_the_head_flag_names_the_methods_head():
    import train

    args = train.build_parser().parse_args(["--trainer", "CoOp", "--head", "DePT"])
    cfg = get_cfg_default()
    train.reset_cfg(cfg, args)
    assert cfg.TRAINER.PARTS.HEAD == "DePT" and cfg.MODEL.HEAD.NAME == ""


def test_the_listing_names_every_part_its_node_and_keys():
    listed = lines()
    assert any(line.split()[:4] == ["term", "KgCoOp", "TRAINER.KGCOOP", "W=1.0"]
               for line in listed)
    assert any(line.startswith("epoch hook GPA") and "MEAN=15" in line for line in listed)
    assert any(line.startswith("alias") and "TRAINER.COOP.W -> TRAINER.KGCOOP.W" in line
               for line in listed)
    for registry, kind in ((PROMPT_LEARNER_REGISTRY, "learner"), (TERM_REGISTRY, "term"),
                           (HEAD_REGISTRY, "head")):
        for name in registry:
            assert any(line.split()[:2] == [kind, name] for line in listed), name


# --------------------------------------------------------------------------- with the engine


def engine_cfg(root: str, out: str, trainer: str, *opts: str, config_file: str = ""):
    from engine.utils import set_random_seed
    from tests.engine.toy import ToyFolder  # noqa: F401  (registers the toy dataset)

    set_random_seed(1)
    cfg = get_cfg_default()
    if config_file:
        cfg.merge_from_file(str(REPO / config_file))
    cfg.merge_from_list([
        "DATASET.ROOT", root, "DATASET.NAME", "ToyFolder", "TRAINER.NAME", trainer,
        "MODEL.BACKBONE.NAME", "tiny", "INPUT.SIZE", "(32, 32)", "OUTPUT_DIR", out, "SEED", "1",
        "USE_CUDA", "False", "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "4",
        "DATALOADER.TEST.BATCH_SIZE", "6", "OPTIM.NAME", "sgd", "OPTIM.LR", "0.05",
        "OPTIM.WARMUP_EPOCH", "-1", "VERBOSE", "False", "TEST.NO_TEST", "True", *opts])
    cfg.freeze()
    return cfg


def test_checkpoints_record_what_shaped_the_tensors_not_the_loss_weights(tmp_path):
    root = make_image_folder(str(tmp_path / "data"), per_class=2)
    out = str(tmp_path / "w8")
    common = ("TRAINER.COOP.PREC", "fp32", "TRAINER.COOP.CTX_INIT", "", "OPTIM.MAX_EPOCH", "1")
    trained = build_trainer(engine_cfg(root, out, "KgCoOp", *common, "TRAINER.COOP.N_CTX", "4",
                                       "TRAINER.COOP.W", "8.0"))
    trained.train()
    # the loss weight W does not shape the context: a W 1 run evaluates the W 8 file
    other_weight = build_trainer(engine_cfg(root, str(tmp_path / "w1"), "KgCoOp", *common,
                                            "TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.W", "1.0"))
    other_weight.load_model(out, epoch=1)
    assert torch.equal(other_weight.model.prompt_learner.ctx, trained.model.prompt_learner.ctx)
    # the context length does
    longer = build_trainer(engine_cfg(root, str(tmp_path / "n16"), "KgCoOp", *common,
                                      "TRAINER.COOP.N_CTX", "16"))
    with pytest.raises(CheckpointError,
                       match="TRAINER.COOP.N_CTX is 4 in the checkpoint, 16 in this run"):
        longer.load_model(out, epoch=1)


class Interrupted(Exception):
    pass


def test_gpa_on_maple_from_a_config_file_resumes_to_the_uninterrupted_weights(tmp_path):
    root = make_image_folder(str(tmp_path / "data"), per_class=2)
    opts = ("TRAINER.MAPLE.PREC", "fp32", "TRAINER.MAPLE.PROMPT_DEPTH", "2", "OPTIM.MAX_EPOCH",
            "3", "TRAINER.GPA.MEAN", "2", "TRAIN.CHECKPOINT_FREQ", "1")
    config = "configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx_gpa.yaml"
    full = build_trainer(engine_cfg(root, str(tmp_path / "full"), "MaPLe", *opts,
                                    config_file=config))
    assert [h.name for h in full.method.epoch_hooks] == ["GPA"]
    last_epoch = {}
    hook_after = full.method.epoch_hooks[0].after_epoch

    def keep_last(epoch, max_epoch, trained):
        last_epoch.update({k: v.clone() for k, v in trained.state_dict().items()})
        hook_after(epoch, max_epoch, trained)

    full.method.epoch_hooks[0].after_epoch = keep_last
    full.train()
    final = full.model.prompt_learner.state_dict()
    assert any(not torch.equal(final[k], v) for k, v in last_epoch.items())  # aggregated

    interrupted = build_trainer(engine_cfg(root, str(tmp_path / "resumed"), "MaPLe", *opts,
                                           config_file=config))
    after_epoch = interrupted.after_epoch

    def stop_after_two():
        after_epoch()
        if interrupted.epoch + 1 == 2:
            raise Interrupted

    interrupted.after_epoch = stop_after_two
    with pytest.raises(Interrupted):
        interrupted.train()
    resumed = build_trainer(engine_cfg(root, str(tmp_path / "resumed"), "MaPLe", *opts,
                                       config_file=config))
    resumed.train()
    assert resumed.start_epoch == 2
    for key, value in resumed.model.prompt_learner.state_dict().items():
        torch.testing.assert_close(value, final[key], atol=1e-6, rtol=0)


def test_the_contributing_example_is_one_file_that_trains(tmp_path, backbone):
    """CONTRIBUTING.md's worked example, run as written: a learner reading the dataset's
    template from the context, a declaration, nothing else."""
    import importlib.util
    import re
    import sys

    text = (REPO / "CONTRIBUTING.md").read_text()
    section = text[text.index("### Add a method"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.splitlines()) <= 70  # TCP-sized
    path = tmp_path / "class_aware_example.py"
    path.write_text(code)
    spec = importlib.util.spec_from_file_location("class_aware_example", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    from engine import TRAINER_REGISTRY

    assert TRAINER_REGISTRY.get("ClassAwareCoOp") is module.ClassAwareCoOp
    cfg = get_cfg_default()
    cfg.merge_from_list(["DATASET.NAME", "OxfordPets", "TRAINER.CLASS_AWARE.N_CTX", "2"])
    method = assemble(module.ClassAwareCoOp.declaration, cfg, backbone, CLASSNAMES)
    learner = method.learner
    assert learner.ctx.shape == (2, 64) and method.objective.names == ["ce", "kg"]
    assert method.learner_config == {"TRAINER.CLASS_AWARE.N_CTX": 2}
    assert set(learner.state_dict()) == {"ctx", "project.weight", "project.bias"}
    optim = torch.optim.SGD(method.trained_parameters(), lr=1.0)
    losses = method.losses(images(2, seed=1), torch.tensor([0, 3]))
    method.backward(losses, lambda loss: loss.backward())
    assert learner.project.weight.grad.abs().sum() > 0 and learner.ctx.grad.abs().sum() > 0
    optim.step()
    with torch.no_grad():
        assert method.model.eval()(images(3, seed=2)).shape == (3, len(CLASSNAMES))


def test_a_trainer_subclass_declaring_with_class_attributes_still_works(backbone):
    """The registration of earlier versions: class attributes on a PromptTrainer subclass, or
    on a subclass of a declared method's trainer, become the declaration they describe."""
    from trainers.base import PromptTrainer
    from trainers.kgcoop import KgCoOp

    class LegacyKg(PromptTrainer):
        config_node, model_name, learner_name = "COOP", "PromptLearner", "CoOp"
        term_names = ("CE", "KgCoOp")

    class PlainKg(KgCoOp):
        term_names = ("CE",)

    assert (LegacyKg.declaration.name, LegacyKg.declaration.node, LegacyKg.declaration.terms,
            LegacyKg.model_name) == ("LegacyKg", "COOP", ("CE", "KgCoOp"), "PromptLearner")
    assert PlainKg.declaration.terms == ("CE",)
    assert PlainKg.declaration.learner_init is KgCoOp.declaration.learner_init
    cfg = get_cfg_default()
    cfg.merge_from_list(["DATASET.NAME", "OxfordPets", "TRAINER.COOP.N_CTX", "2"])
    method = LegacyKg.assemble(cfg, backbone, CLASSNAMES)
    assert method.objective.names == ["ce", "kg"] and method.learner.ctx.shape == (2, 64)
    cfg.merge_from_list(["TRAINER.COOP.CTX_INIT", "True"])
    assert PlainKg.assemble(cfg, backbone, CLASSNAMES).learner_settings["ctx_init"] == (
        "a photo of a")  # KgCoOp's reading of CTX_INIT: True, inherited
