"""MVLPT on tiny CLIPs: the prompts of each variant and where they land, the MUPT coupling,
multitask data and per-task evaluation, the flags, source -> average -> target, ACT_CKPT."""

from __future__ import annotations

import logging
import re

import pytest
import torch
import torch.nn.functional as F

import clip
import datasets  # noqa: F401  (registration)
import train
import trainers  # noqa: F401  (registration)
from datasets.multitask import build_task_dataset
from engine.config import get_cfg_default
from engine.data.datasets import DATASET_REGISTRY, DatasetBase
from engine.errors import ConfigKeyError
from engine.evaluator import MultiTaskClassification, TaskRange, build_evaluator
from engine.trainer import build_trainer
from scripts.avg_ckpt import average_runs
from tests.datasets.layouts import build_tasks
from trainers.cocoop import CoCoOpPromptLearner
from trainers.mvlpt import MVLPT, MVLPTPromptedCLIP, MVLPTPromptLearner, check_node

NAMES = ["face", "leopard", "sea_lion", "airplane"]
TASKS = {"Caltech101": ["face", "leopard", "motorbike"], "EuroSAT": ["Forest", "River"]}
M = 3  # visual prompt tokens


@pytest.fixture(scope="module")
def model() -> clip.CLIP:
    """Text width 64, vision width 128, 2 text and 3 vision layers: a width or depth taken from
    the wrong tower fails."""
    return clip.tiny_clip(seed=2, text_width=64, vision_width=128, text_layers=2,
                          vision_layers=3).requires_grad_(False)


def images(n: int = 4) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(5))


def shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(p.shape) for name, p in module.named_parameters()}


# --------------------------------------------------------------------------- the learners

COUPLING = {"mvlpt_proj_ctx_coop_pre.weight": (32, 64), "mvlpt_proj_ctx_coop_pre.bias": (32,),
            "mvlpt_proj_ctx_coop_post.weight": (64, 32), "mvlpt_proj_ctx_coop_post.bias": (64,),
            "mvlpt_proj_ctx_vpt_pre.weight": (32, 128), "mvlpt_proj_ctx_vpt_pre.bias": (32,),
            "mvlpt_proj_ctx_vpt_post.weight": (128, 32), "mvlpt_proj_ctx_vpt_post.bias": (128,)}
VISUAL = {"vpt_embeddings": (1, M, 128), "vpt_embeddings_deep": (2, M, 128)}


@pytest.mark.parametrize("kwargs, expected", [
    ({"coop_n_ctx": 4}, {"ctx": (4, 64)}),
    ({"coop_n_ctx": 4, "coop_csc": True}, {"ctx": (4, 4, 64)}),
    ({"vpt_n_ctx": M}, VISUAL),
    ({"vpt_n_ctx": M, "vpt_deep": False}, {"vpt_embeddings": (1, M, 128)}),
    ({"vpt_n_ctx": M, "vpt_project": 16}, {"vpt_embeddings": (1, M, 16),
                                           "vpt_embeddings_deep": (2, M, 16),
                                           "vpt_proj.weight": (128, 16), "vpt_proj.bias": (128,)}),
    ({"coop_n_ctx": 4, "vpt_n_ctx": M, "project_method": "identity"}, {"ctx": (4, 64), **VISUAL}),
    ({"coop_n_ctx": 4, "vpt_n_ctx": M, "project_method": "mlp"},
     {"ctx": (4, 64), **VISUAL, **COUPLING}),
])
def test_each_variant_learns_its_tensors_under_the_official_names(model, kwargs, expected):
    learner = MVLPTPromptLearner(model, NAMES, project_dim=32, **kwargs)
    assert shapes(learner) == expected
    assert sorted(learner.state_dict()) == sorted(expected)  # no token buffers saved


def test_mupt_has_one_clip_block_of_the_projection_width(model):
    learner = MVLPTPromptLearner(model, NAMES, coop_n_ctx=4, vpt_n_ctx=M, project_dim=32)
    block = {k: v for k, v in shapes(learner).items() if k.startswith("mvlpt_proj.")}
    assert block["mvlpt_proj.resblocks.0.attn.in_proj_weight"] == (96, 32)
    assert block["mvlpt_proj.resblocks.0.mlp.c_fc.weight"] == (128, 32)
    assert len(block) == 12 and learner.mvlpt_proj.resblocks[0].attn.num_heads == 1


def test_visual_prompts_start_uniform_within_the_xavier_bound(model):
    learner = MVLPTPromptLearner(model, NAMES, vpt_n_ctx=16)
    bound = (6 / (3 * 8 * 8 + 128)) ** 0.5
    for p in (learner.vpt_embeddings, learner.vpt_embeddings_deep):
        assert p.abs().max() <= bound and p.abs().max() > 0.9 * bound
        assert abs(p.mean().item()) < 0.02 and abs(p.std().item() - bound / 3 ** 0.5) < 0.02


def test_mvpt_text_is_the_fixed_prompt_and_mcoop_puts_the_name_in_the_middle(model):
    mvpt = MVLPTPromptLearner(model, NAMES, vpt_n_ctx=M)
    assert torch.equal(mvpt.class_tokens.tokens,
                       clip.tokenize([f"a photo of a {n.replace('_', ' ')}." for n in NAMES]))
    mcoop = MVLPTPromptLearner(model, NAMES, coop_n_ctx=4)
    schedule = mcoop()
    name = clip.tokenize("sea lion")[0, 1:3]
    embedded = model.token_embedding(name)
    assert torch.equal(schedule.text_embeddings[2, 3:5], embedded)  # SOS, 2 ctx, the name
    assert torch.equal(schedule.text_embeddings[2, 1:3], mcoop.ctx[:2])
    assert torch.equal(schedule.text_embeddings[2, 5:7], mcoop.ctx[2:])


def test_visual_prompts_join_after_ln_pre_and_replace_every_deeper_layer(model):
    learner = MVLPTPromptLearner(model, NAMES, vpt_n_ctx=M)
    seen: list[torch.Tensor] = []
    hooks = [b.register_forward_pre_hook(lambda m, a: seen.append(a[0]))
             for b in model.visual.transformer.resblocks]
    try:
        with torch.no_grad():
            MVLPTPromptedCLIP(model, learner).eval()(images())
    finally:
        for hook in hooks:
            hook.remove()
    layers = torch.cat([learner.vpt_embeddings, learner.vpt_embeddings_deep])
    for i, x in enumerate(seen):  # the prompts reach each block exactly as learned
        assert torch.equal(x[:, -M:], layers[i].expand(4, -1, -1))


def _block_by_hand(block, x: torch.Tensor) -> torch.Tensor:
    """A residual block on one token: attention over a single token is its value."""
    w, b = block.attn.in_proj_weight, block.attn.in_proj_bias
    width = x.shape[-1]
    value = F.linear(block.ln_1(x), w[2 * width:], b[2 * width:])
    x = x + block.attn.out_proj(value)
    return x + block.mlp(block.ln_2(x))


def test_mupt_coupling_transforms_each_prompt_token_alone(model):
    learner = MVLPTPromptLearner(model, NAMES, coop_n_ctx=4, vpt_n_ctx=M, project_dim=32)
    with torch.no_grad():
        for p in learner.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) * 0.1)
    ctx, visual = learner.prompts()
    block = learner.mvlpt_proj.resblocks[0]
    text = _block_by_hand(block, learner.mvlpt_proj_ctx_coop_pre(learner.ctx))
    torch.testing.assert_close(ctx, learner.mvlpt_proj_ctx_coop_post(text), atol=1e-5, rtol=0)
    stack = torch.cat([learner.vpt_embeddings, learner.vpt_embeddings_deep]).reshape(-1, 128)
    image = _block_by_hand(block, learner.mvlpt_proj_ctx_vpt_pre(stack))
    torch.testing.assert_close(visual.reshape(-1, 128), learner.mvlpt_proj_ctx_vpt_post(image),
                               atol=1e-5, rtol=0)
    (ctx.sum() + visual.square().sum()).backward()
    in_proj = block.attn.in_proj_weight.grad
    # q and k do not matter (softmax over one token): zero up to the attention kernel's rounding
    assert in_proj[:64].abs().max() < 1e-3 * in_proj[64:].abs().max()


def test_mlp_coupling_is_a_gelu_between_the_projections(model):
    learner = MVLPTPromptLearner(model, NAMES, coop_n_ctx=4, vpt_n_ctx=M, project_dim=32,
                                 project_method="mlp")
    ctx, _ = learner.prompts()
    hidden = F.gelu(learner.mvlpt_proj_ctx_coop_pre(learner.ctx))
    expected = learner.mvlpt_proj_ctx_coop_post(hidden)
    torch.testing.assert_close(ctx, expected)
    F.cross_entropy(MVLPTPromptedCLIP(model, learner)(images()), torch.arange(4)).backward()
    assert learner.mvlpt_proj_ctx_vpt_pre.weight.grad.abs().sum() > 0


def test_visual_prompt_dropout_is_drawn_per_image_in_training_only(model):
    learner = MVLPTPromptLearner(model, NAMES, vpt_n_ctx=M, vpt_dropout=0.5)
    prompts = learner().vision
    torch.manual_seed(0)
    dropped = learner.train().drop(prompts, 4)
    assert dropped[0].shape == (4, M, 128)
    assert not torch.equal(dropped[0][0], dropped[0][1])  # another mask for every image
    assert learner.eval().drop(prompts, 4) is prompts


@pytest.mark.parametrize("opts, message", [
    ([], "no prompts to learn"),
    (["COCOOP.N_CTX", 4, "COOP.N_CTX", 4], "takes no other prompts"),
    (["COOP.N_CTX", 4, "PROJECT_METHOD", "linear"], "transformer, identity, mlp"),
    (["VPT.N_CTX", 4, "VPT.CTX_INIT", "a photo"], "cannot start from words"),
    (["VPT.N_CTX", 4, "VPT.CSC", True], "class-specific visual prompts"),
    (["COOP.N_CTX", 4, "COOP.CLASS_TOKEN_POSITION", "start"], "end, middle, front"),
])
def test_impossible_settings_are_clear_errors(opts, message):
    node = get_cfg_default().TRAINER.MVLPT
    for key, value in zip(opts[::2], opts[1::2], strict=True):
        *parents, leaf = key.split(".")
        target = node
        for part in parents:
            target = target[part]
        target[leaf] = value
    with pytest.raises(ValueError, match=message):
        check_node(node)


def test_visual_prompts_on_a_resnet_are_refused():
    resnet = clip.tiny_clip(vision="resnet")
    with pytest.raises(ValueError, match="ViT"):
        MVLPTPromptLearner(resnet, NAMES, vpt_n_ctx=2)


# --------------------------------------------------------------------------- multitask data


def task_cfg(tmp_path, *opts, tasks: str = "Caltech101,EuroSAT"):
    build_tasks(str(tmp_path / "data"), TASKS)
    cfg = get_cfg_default()
    cfg.merge_from_file("configs/trainers/MVLPT/demo_tiny.yaml")
    cfg.merge_from_list([
        "DATASET.ROOT", str(tmp_path / "data"), "DATASET.DATASET", tasks,
        "DATASET.COOP", "True", "DATASET.MULTITASK", "True", "TRAINER.NAME", "MVLPT",
        "OUTPUT_DIR", str(tmp_path / "out"), "SEED", "1", "USE_CUDA", "False",
        "OPTIM.MAX_EPOCH", "1", "DATALOADER.TRAIN_X.BATCH_SIZE", "10", "VERBOSE", "False",
        "TRAINER.MVLPT.VPT.N_CTX", "2", *opts])
    return cfg


def test_tasks_share_one_label_space_in_their_order(tmp_path):
    dataset = build_task_dataset(task_cfg(tmp_path, "DATASET.NUM_SHOTS", "2"))
    assert dataset.classnames == TASKS["Caltech101"] + TASKS["EuroSAT"]
    assert dataset.tasks == [TaskRange("Caltech101", 0, 3), TaskRange("EuroSAT", 3, 5)]
    assert len(dataset.train_x) == 2 * 5 and len(dataset.test) == 2 * 5
    for item in dataset.train_x + dataset.val + dataset.test:
        task = dataset.tasks[item.domain]
        assert task.start <= item.label < task.end
        assert dataset.classnames[item.label] == item.classname


def test_the_seed_draws_the_tasks_few_shot_images_one_after_the_other(tmp_path):
    """One random stream, consumed task after task in the listed order (the official data
    manager builds the datasets in a loop after one seeding): EuroSAT's images depend on
    Caltech101 being drawn before it."""
    import random

    from datasets.sampling import select_few_shot

    full = build_task_dataset(task_cfg(tmp_path))  # every image, nothing drawn
    splits = [[[d for d in split if d.domain == task] for split in (full.train_x, full.val)]
              for task in (0, 1)]
    random.seed(1)
    joint = build_task_dataset(task_cfg(tmp_path, "DATASET.NUM_SHOTS", "2"))
    random.seed(1)
    expected = [select_few_shot(train, val, 2)[0] for train, val in splits]
    assert [d.impath for d in joint.train_x] == [d.impath for d in expected[0] + expected[1]]
    random.seed(1)
    eurosat_first = select_few_shot(*splits[1], 2)[0]
    assert [d.impath for d in eurosat_first] != [d.impath for d in expected[1]]


def test_bad_task_lists_are_clear_errors(tmp_path):
    # an error of the input: train.py prints it as one line and exits with 2
    with pytest.raises(ConfigKeyError, match=r"'Caltech11'.*Registered datasets: .*Caltech101"):
        build_task_dataset(task_cfg(tmp_path, tasks="Caltech11,EuroSAT"))
    with pytest.raises(ConfigKeyError, match=r"'cifar10'.*ELEVATER task \(did you mean "
                                             r"'cifar-10'\?\): caltech-101, cifar-10"):
        build_task_dataset(task_cfg(tmp_path, "DATASET.COOP", "False", tasks="cifar10"))
    with pytest.raises(ValueError, match="listed twice"):
        build_task_dataset(task_cfg(tmp_path, tasks="EuroSAT,EuroSAT"))
    with pytest.raises(ValueError, match="pass --dataset-coop"):
        build_task_dataset(task_cfg(tmp_path, "DATASET.COOP", "False"))

    class OtherLayout(DatasetBase):
        data_layout = "elevater"

    DATASET_REGISTRY.register(OtherLayout, name="UnitTestOtherLayout")
    try:
        with pytest.raises(ValueError, match=r"mixes CoOp-layout datasets \(EuroSAT\) with "
                                             r"datasets of other layouts \(UnitTestOtherLayout"):
            build_task_dataset(task_cfg(tmp_path, tasks="EuroSAT,UnitTestOtherLayout"))
        with pytest.raises(ValueError, match="drop --dataset-coop"):
            build_task_dataset(task_cfg(tmp_path, tasks="UnitTestOtherLayout"))
    finally:
        del DATASET_REGISTRY._entries["UnitTestOtherLayout"]


def test_each_task_is_judged_among_its_own_classes(caplog):
    cfg = get_cfg_default()
    tasks = [TaskRange("A", 0, 3), TaskRange("B", 3, 5)]
    evaluator = build_evaluator(cfg, tasks=tasks)
    assert isinstance(evaluator, MultiTaskClassification)
    logits = torch.tensor([[0.0, 5, 1, 9, 9],    # A, label 1: right among A's classes
                           [3.0, 1, 2, 0, 0],    # A, label 2: wrong
                           [9.0, 9, 9, 1, 2],    # B, label 4: right among B's classes
                           [0.0, 0, 0, 1, 0]])   # B, label 3: right
    with caplog.at_level(logging.INFO):
        results = evaluator.evaluate() if evaluator.process(logits, torch.tensor([1, 2, 4, 3])) \
            is None else None
    assert results["A/accuracy"] == 50.0 and results["B/accuracy"] == 100.0
    assert results["accuracy"] == 75.0  # the mean over tasks is the selection value
    lines = caplog.text.splitlines()
    assert any(re.search(r"\* task: 0 \(A\)\ttotal: 2\tcorrect: 1\taccuracy: 50.0%", x)
               for x in lines)
    assert "* accuracy: 75.0% (average of the 2 per-task accuracies)" in caplog.text
    cfg.DATASET.MULTITASK_EVALKEY = "B"
    evaluator = build_evaluator(cfg, tasks=tasks)
    evaluator.process(logits, torch.tensor([1, 2, 4, 3]))
    assert evaluator.evaluate()["accuracy"] == 100.0
    cfg.DATASET.MULTITASK_EVALKEY = "C"
    with pytest.raises(ValueError, match="'average' or one of the tasks: A, B"):
        build_evaluator(cfg, tasks=tasks)


def test_per_task_label_mask_zeroes_the_other_tasks_logits(tmp_path):
    """MVLPT's objective term: other tasks' logits multiplied by 0 (not -inf) before the
    cross-entropy; a 0/1 target matrix (ELEVATER's multi-label) is a soft target over its sum."""
    from types import SimpleNamespace

    trainer = build_trainer(task_cfg(tmp_path, "DATASET.MULTITASK_LABEL_PERTASK", "True"))
    term = trainer.objective["ce"]
    logits = torch.randn(3, 5, generator=torch.Generator().manual_seed(0)) + 1
    out = SimpleNamespace(logits=logits)
    label = torch.tensor([0, 4, 2])
    mask = torch.tensor([[1.0, 1, 1, 0, 0], [0, 0, 0, 1, 1], [1, 1, 1, 0, 0]])
    assert abs(term(out, label).item() - F.cross_entropy(logits * mask, label).item()) < 1e-6
    multi_hot = torch.tensor([[1.0, 0, 1, 0, 0], [0, 0, 0, 0, 1], [0, 1, 0, 0, 0]])
    expected = -(multi_hot / multi_hot.sum(1, keepdim=True)
                 * torch.log_softmax(logits * mask, 1)).sum(1).mean()
    assert abs(term(out, multi_hot).item() - expected.item()) < 1e-6
    cfg = task_cfg(tmp_path, "DATASET.MULTITASK_LABEL_PERTASK", "True", "DATASET.MULTITASK",
                   "False")
    with pytest.raises(ValueError, match="needs DATASET.MULTITASK"):
        build_trainer(cfg)


def test_activation_checkpointing_gives_the_same_gradients(tmp_path):
    grads, state = [], None
    for segments in ("1", "2"):
        trainer = build_trainer(task_cfg(tmp_path, "TRAINER.ACT_CKPT", segments,
                                         "TRAINER.MVLPT.COOP.N_CTX", "4"))
        assert trainer.clip_model.transformer.checkpoint_segments == int(segments)
        state = state or trainer.model.prompt_learner.state_dict()
        trainer.model.prompt_learner.load_state_dict(state)
        trainer.model.train()
        loss, _ = trainer.compute_loss(images(), torch.tensor([0, 1, 3, 4]))
        loss.backward()
        grads.append({n: p.grad for n, p in trainer.model.prompt_learner.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=0, rtol=0)


def test_mcocoop_is_cocoops_learner_and_reads_official_names(tmp_path):
    trainer = build_trainer(task_cfg(tmp_path, "TRAINER.MVLPT.VPT.N_CTX", "0",
                                     "TRAINER.MVLPT.COOP.N_CTX", "0",
                                     "TRAINER.MVLPT.COCOOP.N_CTX", "2"))
    learner = trainer.model.prompt_learner
    assert isinstance(learner, CoCoOpPromptLearner)
    official = {"cocoop_ctx": torch.ones(2, 64), "token_prefix": torch.zeros(5, 1, 64),
                **{f"meta_net.{k}": v for k, v in learner.meta_net.state_dict().items()}}
    learner.load_state_dict(MVLPT.learner_state_dict(official))
    assert torch.equal(learner.ctx, torch.ones(2, 64))
    assert trainer.model(images(2)).shape == (2, 5)


# --------------------------------------------------------------------------- command line


def test_official_flags_set_their_keys(tmp_path):
    args = train.build_parser().parse_args([
        "--trainer", "MVLPT", "--seed", "3", "--dataset", "Caltech101,EuroSAT", "--shots", "5",
        "--multi-task", "--multi-task-label_pertask", "--multi-task-evalkey", "EuroSAT",
        "--dataset-coop", "--cut-contextlen", "--act-ckpt", "4"])
    cfg = train.setup_cfg(args)
    assert cfg.DATASET.DATASET == "Caltech101,EuroSAT"
    assert (cfg.DATASET.NUM_SHOTS, cfg.DATASET.NUM_SAMPLES_PER_CLASS) == (5, 5)
    assert cfg.DATASET.MULTITASK and cfg.DATASET.MULTITASK_LABEL_PERTASK and cfg.DATASET.COOP
    assert cfg.DATASET.MULTITASK_EVALKEY == "EuroSAT" and cfg.DATASET.RANDOM_SEED_SAMPLING == 3
    assert cfg.TRAINER.CUT_CONTEXTLEN and cfg.TRAINER.ACT_CKPT == 4
    plain = train.setup_cfg(train.build_parser().parse_args([]))
    assert not plain.DATASET.MULTITASK and plain.TRAINER.ACT_CKPT == 1


def _run(tmp_path, out: str, *argv: str) -> str:
    build_tasks(str(tmp_path / "data"), TASKS)
    train.cli(["--root", str(tmp_path / "data"), "--trainer", "MVLPT", "--config-file",
               "configs/trainers/MVLPT/demo_tiny.yaml", "--dataset-coop", "--shots", "2",
               "--output-dir", str(tmp_path / out), *argv, "OPTIM.MAX_EPOCH", "1",
               "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "TRAIN.PRINT_FREQ", "1", "VERBOSE", "False"])
    return (tmp_path / out / "log.txt").read_text()


def test_source_then_average_then_target(tmp_path):
    """The official chain on the tiny CLIP: a multitask source per seed, their average, a target
    initialised from it (the log names the file and the tensors); mixed-task batches and
    per-task results on the way."""
    log = _run(tmp_path, "source/seed1", "--seed", "1", "--dataset", "Caltech101,EuroSAT",
               "--multi-task")
    loader = build_trainer(task_cfg(tmp_path, "DATASET.NUM_SHOTS", "2",
                                    "DATALOADER.TRAIN_X.BATCH_SIZE", "4")).train_loader_x
    assert max(len(set(batch["domain"].tolist())) for batch in loader) == 2  # mixed batches
    final = log.split("Finish training")[1]
    per_task = [float(x) for x in re.findall(r"\* task: \d \(\w+\)\t.*accuracy: ([\d.]+)%", final)]
    selection = float(re.findall(r"\* accuracy: ([\d.]+)%", final)[-1])
    assert len(per_task) == 2 and abs(selection - sum(per_task) / 2) < 0.06

    # a second seed: the first one's checkpoint with other values
    path = tmp_path / "source/seed1/prompt_learner/model-best.pth.tar"
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["state_dict"] = {k: v + 1 for k, v in checkpoint["state_dict"].items()}
    (tmp_path / "source/seed2/prompt_learner").mkdir(parents=True)
    torch.save(checkpoint, tmp_path / "source/seed2/prompt_learner/model-best.pth.tar")
    average_runs([str(tmp_path / "source/seed1"), str(tmp_path / "source/seed2")],
                 str(tmp_path / "source"))
    best = [torch.load(tmp_path / f"source/seed{s}/prompt_learner/model-best.pth.tar",
                       weights_only=True)["state_dict"] for s in (1, 2)]
    averaged = torch.load(tmp_path / "source/prompt_learner/model-best.pth.tar",
                          weights_only=True)["state_dict"]
    assert {"ctx", "vpt_embeddings", "vpt_embeddings_deep"} < set(averaged) == set(best[0])
    for key in averaged:
        torch.testing.assert_close(averaged[key], (best[0][key] + best[1][key]) / 2)

    log = _run(tmp_path, "target", "--seed", "1", "--dataset", "EuroSAT",
               "--model-dir", str(tmp_path / "source"), "--no-train")
    assert re.search(r"Initialised prompt_learner from .*source/prompt_learner/"
                     r"model-best.pth.tar \(epoch \d+ of that run\): took vpt_embeddings "
                     r"\[1, 4, 64\], vpt_embeddings_deep \[1, 4, 64\], ctx \[4, 64\], ", log)
    cfg = task_cfg(tmp_path, "TRAINER.MVLPT.COOP.N_CTX", "4", "TRAINER.MVLPT.VPT.N_CTX", "4",
                   tasks="EuroSAT")
    target = build_trainer(cfg)
    target.initialize_from(str(tmp_path / "source"))
    for key, value in target.model.prompt_learner.state_dict().items():
        assert torch.equal(value, averaged[key])


def test_class_specific_context_does_not_transfer_to_other_classes(tmp_path):
    source = build_trainer(task_cfg(tmp_path, "TRAINER.MVLPT.VPT.N_CTX", "0",
                                    "TRAINER.MVLPT.COOP.N_CTX", "2", "TRAINER.MVLPT.COOP.CSC",
                                    "True"))
    source.save_model(0, str(tmp_path / "src"), is_best=True, model_name="model-best.pth.tar")
    target = build_trainer(task_cfg(tmp_path, "TRAINER.MVLPT.VPT.N_CTX", "0",
                                    "TRAINER.MVLPT.COOP.N_CTX", "2", "TRAINER.MVLPT.COOP.CSC",
                                    "True", tasks="EuroSAT"))
    with pytest.raises(ValueError, match=r"other shapes: ctx \[5, 2, 64\] in the file, "
                                         r"\[2, 2, 64\] here.*class-specific"):
        target.initialize_from(str(tmp_path / "src"))
    mcoop = build_trainer(task_cfg(tmp_path, "TRAINER.MVLPT.VPT.N_CTX", "0",
                                   "TRAINER.MVLPT.COOP.N_CTX", "2", tasks="EuroSAT"))
    other = build_trainer(task_cfg(tmp_path, "TRAINER.MVLPT.COOP.N_CTX", "0", tasks="EuroSAT"))
    mcoop.save_model(0, str(tmp_path / "mcoop"), is_best=True, model_name="model-best.pth.tar")
    # a file of another variant: its recorded prompt settings say so, before any tensor
    with pytest.raises(ValueError, match=r"TRAINER.MVLPT.COOP.N_CTX is 2 in the checkpoint, 0 in "
                                         r"this run; TRAINER.MVLPT.VPT.N_CTX is 0 in the "
                                         r"checkpoint, 2 in this run"):
        other.initialize_from(str(tmp_path / "mcoop"))


def test_every_mvlpt_config_merges():
    from pathlib import Path

    configs = sorted(Path("configs/trainers/MVLPT").glob("*.yaml"))
    assert len(configs) == 19
    for path in configs:
        cfg = get_cfg_default()
        cfg.merge_from_file(str(path))


@pytest.mark.parametrize("position", ["middle", "front"])
@pytest.mark.parametrize("n_ctx, csc", [(1, False), (5, False), (4, True)])
def test_the_class_name_moves_into_the_context_as_written_out(model, position, n_ctx, csc):
    """CoOp's and MVLPT's arrangement (one gather for all classes) against the prompts written
    out class by class: the same values and the same gradients."""
    from trainers.coop import CoOpPromptLearner, context_schedule

    names = ["face", "sea_lion", "american pit bull terrier", "a"]
    learner = CoOpPromptLearner(model, names, n_ctx=n_ctx, csc=csc, position=position)
    with torch.no_grad():
        learner.ctx.normal_()
    tokens, ctx = learner.class_tokens, learner.ctx
    rows = []
    half = n_ctx // 2 if position == "middle" else 0
    for i, length in enumerate(learner.name_lens):
        own = ctx[i] if csc else ctx
        e = tokens.embeddings[i]
        rows.append(torch.cat([e[:1], own[:half], e[1 + n_ctx:1 + n_ctx + length], own[half:],
                               e[1 + n_ctx + length:]]))
    written = torch.stack(rows)
    arranged = context_schedule(tokens, ctx, learner.name_lens, position).text_embeddings
    assert torch.equal(arranged, written)
    weights = torch.randn(written.shape, generator=torch.Generator().manual_seed(0))
    (grad_a,) = torch.autograd.grad((arranged * weights).sum(), ctx)
    (grad_w,) = torch.autograd.grad((written * weights).sum(), ctx)
    torch.testing.assert_close(grad_a, grad_w)
