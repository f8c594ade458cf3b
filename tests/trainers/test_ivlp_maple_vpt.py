"""IVLP (and deep language prompting), VPT and MaPLe on tiny random CLIPs: which tensors train,
where each prompt lands in each tower and layer, MaPLe's coupling, official checkpoint files,
and a few optimisation steps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import clip
from clip.model import CLIP
from engine.checkpoint import load_checkpoint
from engine.config import get_cfg_default
from trainers.base import PromptedCLIP, embed_words, normalize
from trainers.ivlp import IVLP, IVLPPromptLearner
from trainers.maple import MaPLe, MaPLePromptLearner
from trainers.vpt import VPT, FixedTextPromptedCLIP, VPTPromptLearner

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "trainers"
CLASSNAMES = ["face", "leopard", "sea_lion", "airplane"]
RESOLUTION, PATCH = 32, 8
PATCHES = (RESOLUTION // PATCH) ** 2


def tiny_clip(text_width: int = 64, vision_width: int = 128, text_layers: int = 3,
              vision_layers: int = 4, seed: int = 0) -> CLIP:
    """A random CLIP in OpenAI's layout; the two towers have different widths and depths so
    that a width or depth taken from the wrong tower fails."""
    torch.manual_seed(seed)
    model = CLIP(embed_dim=32, image_resolution=RESOLUTION, vision_layers=vision_layers,
                 vision_width=vision_width, vision_patch_size=PATCH, context_length=77,
                 vocab_size=49408, transformer_width=text_width, transformer_heads=2,
                 transformer_layers=text_layers)
    return model.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def model() -> CLIP:
    return tiny_clip()


def images(n: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, RESOLUTION, RESOLUTION, generator=torch.Generator().manual_seed(seed))


def block_inputs(transformer) -> tuple[list[torch.Tensor], list]:
    """Record the input of every block of a transformer (forward pre-hooks)."""
    seen: list[torch.Tensor] = []
    hooks = [block.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach()))
             for block in transformer.resblocks]
    return seen, hooks


def run_recording(model: CLIP, learner) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(text block inputs, vision block inputs) of one forward pass."""
    text_in, text_hooks = block_inputs(model.transformer)
    vision_in, vision_hooks = block_inputs(model.visual.transformer)
    with torch.no_grad():
        PromptedCLIP(model, learner)(images())
    for hook in text_hooks + vision_hooks:
        hook.remove()
    return text_in, vision_in


def perturb(param: torch.Tensor) -> None:
    """Add noise (not a constant: LayerNorm would ignore a shift shared by all features)."""
    param.add_(torch.randn(param.shape, generator=torch.Generator().manual_seed(5)))


def shapes(learner) -> dict[str, tuple[int, ...]]:
    return {name: tuple(p.shape) for name, p in learner.named_parameters()}


# --------------------------------------------------------------------------- IVLP


def test_ivlp_trains_exactly_its_prompts(model):
    learner = IVLPPromptLearner(model, CLASSNAMES, n_ctx_text=2, n_ctx_vision=3, depth_text=3,
                                depth_vision=2)
    expected = {"ctx": (2, 64), "text_prompts.1": (2, 64), "text_prompts.2": (2, 64),
                "vision_prompts.0": (3, 128), "vision_prompts.1": (3, 128)}
    assert shapes(learner) == expected
    assert sorted(learner.state_dict()) == sorted(expected)  # no token buffers in checkpoints
    assert all(p.requires_grad for p in learner.parameters())
    assert not any(p.requires_grad for p in model.parameters())


def test_context_starts_from_the_first_tokens_of_ctx_init_and_the_prompt_keeps_them_all(model):
    learner = IVLPPromptLearner(model, CLASSNAMES, 2, 2, 1, 1, ctx_init="a photo of a")
    torch.testing.assert_close(learner.ctx.data, embed_words(model, "a photo", 2))
    tokens = learner.class_tokens.tokens
    assert torch.equal(tokens, clip.tokenize([f"a photo of a {c.replace('_', ' ')}."
                                              for c in CLASSNAMES]))
    schedule = learner()
    # layer 0 of the text tower writes the context over "a photo": "of a <class>." stays
    assert schedule.text[0] is learner.ctx
    assert torch.equal(schedule.eot, tokens.argmax(-1))


def test_more_than_four_context_tokens_start_random_with_an_x_prompt(model):
    torch.manual_seed(0)
    learner = IVLPPromptLearner(model, CLASSNAMES, 5, 2, 1, 0, ctx_init="a photo of a")
    assert torch.equal(learner.class_tokens.tokens[0], clip.tokenize("X X X X X face.")[0])
    assert 0.01 < learner.ctx.std().item() < 0.03


def test_deep_prompts_are_drawn_from_a_normal_with_std_0_02():
    model = tiny_clip(text_width=256, vision_width=256, text_layers=2, vision_layers=2)
    learner = IVLPPromptLearner(model, CLASSNAMES, 16, 16, 2, 2)
    for name in ("text_prompts.1", "vision_prompts.0", "vision_prompts.1"):
        param = learner.get_parameter(name)
        assert abs(param.std().item() - 0.02) < 0.002 and abs(param.mean().item()) < 0.002


def test_ivlp_prompts_are_placed_in_their_layer_of_their_tower(model):
    n_text, n_vis = 2, 3
    learner = IVLPPromptLearner(model, CLASSNAMES, n_text, n_vis, depth_text=2, depth_vision=3)
    text_in, vision_in = run_recording(model, learner)
    for i, x in enumerate(vision_in):  # 4 vision blocks: tokens = class + patches + prompts
        assert x.shape[1] == 1 + PATCHES + n_vis
        if 0 < i < 3:
            assert torch.equal(x[:, -n_vis:], learner.vision_prompts[str(i)].expand(4, -1, -1))
        elif i == 3:  # beyond the depth the slot holds what block 2 computed
            assert not torch.allclose(x[:, -n_vis:], learner.vision_prompts["2"].expand(4, -1, -1))
    for i, x in enumerate(text_in):  # 3 text blocks
        if i == 1:
            assert torch.equal(x[:, 1:1 + n_text],
                               learner.text_prompts["1"].expand(len(CLASSNAMES), -1, -1))
        if i == 2:  # depth 2: layer 2 keeps block 1's output
            assert not torch.allclose(x[:, 1:1 + n_text],
                                      learner.text_prompts["1"].expand(len(CLASSNAMES), -1, -1))


def test_ivlp_towers_are_independent(model):
    learner = IVLPPromptLearner(model, CLASSNAMES, 2, 2, depth_text=3, depth_vision=4)
    prompted = PromptedCLIP(model, learner)
    with torch.no_grad():
        img0, txt0 = prompted.features(images())
        perturb(learner.vision_prompts["3"])  # the last vision layer's prompt
        img1, txt1 = prompted.features(images())
        perturb(learner.text_prompts["2"])
        img2, txt2 = prompted.features(images())
    assert torch.equal(txt0, txt1) and not torch.allclose(img0, img1)
    assert torch.equal(img1, img2) and not torch.allclose(txt1, txt2)


def test_language_only_prompting_leaves_the_image_tower_as_clip(model):
    learner = IVLPPromptLearner(model, CLASSNAMES, 4, 0, depth_text=3, depth_vision=0)
    assert not any(name.startswith("vision") for name, _ in learner.named_parameters())
    image_features, _ = PromptedCLIP(model, learner).features(images())
    torch.testing.assert_close(image_features, normalize(model.encode_image(images())))


def test_language_only_prompting_runs_on_a_resnet_clip():
    torch.manual_seed(0)
    resnet = CLIP(embed_dim=32, image_resolution=32, vision_layers=(1, 1, 1, 1), vision_width=8,
                  vision_patch_size=None, context_length=77, vocab_size=49408,
                  transformer_width=64, transformer_heads=2, transformer_layers=2).eval()
    learner = IVLPPromptLearner(resnet, CLASSNAMES, 2, 0, depth_text=2, depth_vision=0)
    assert PromptedCLIP(resnet, learner)(images(2)).shape == (2, len(CLASSNAMES))
    with pytest.raises(ValueError, match="ViT"):
        IVLPPromptLearner(resnet, CLASSNAMES, 2, 2, depth_text=2, depth_vision=1)
    with pytest.raises(ValueError, match="ViT"):
        MaPLePromptLearner(resnet, CLASSNAMES, 2, 1)


@pytest.mark.parametrize("kwargs, message", [
    ({"depth_text": 4}, "text prompt depth is 4"),
    ({"depth_vision": 5}, "vision prompt depth is 5"),
    ({"n_ctx_vision": 0}, "at least one context token"),
])
def test_ivlp_rejects_impossible_settings(model, kwargs, message):
    settings = {"n_ctx_text": 2, "n_ctx_vision": 2, "depth_text": 2, "depth_vision": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        IVLPPromptLearner(model, CLASSNAMES, **settings)


def test_ivlp_trainer_asks_for_vpt_when_the_text_depth_is_zero():
    cfg = get_cfg_default()
    cfg.TRAINER.IVLP.PREC = "fp32"
    cfg.TRAINER.IVLP.PROMPT_DEPTH_TEXT = 0
    with pytest.raises(ValueError, match="VPT"):
        IVLP.check_cfg(cfg)


# --------------------------------------------------------------------------- VPT


def test_vpt_learns_vision_prompts_against_the_fixed_hand_written_prompt(model):
    learner = VPTPromptLearner(model, CLASSNAMES, n_ctx=3, depth=2)
    assert shapes(learner) == {"vision_prompts.0": (3, 128), "vision_prompts.1": (3, 128)}
    prompted = FixedTextPromptedCLIP(model, learner)
    _, text_features = prompted.features(images())
    prompts = [f"a photo of a {c.replace('_', ' ')}." for c in CLASSNAMES]
    torch.testing.assert_close(text_features, normalize(model.encode_text(clip.tokenize(prompts))))
    assert not text_features.requires_grad
    assert prompted.features(images())[1] is text_features  # computed once


# --------------------------------------------------------------------------- MaPLe


def test_maple_trains_its_prompts_and_couplings(model):
    learner = MaPLePromptLearner(model, CLASSNAMES, n_ctx=2, depth=3)
    expected = {"ctx": (2, 64), "text_prompts.1": (2, 64), "text_prompts.2": (2, 64)}
    for i in range(3):
        expected |= {f"couplings.{i}.weight": (128, 64), f"couplings.{i}.bias": (128,)}
    assert shapes(learner) == expected
    assert sorted(learner.state_dict()) == sorted(expected)


def test_maple_deeper_couplings_start_as_copies_of_one_linear(model):
    learner = MaPLePromptLearner(model, CLASSNAMES, n_ctx=2, depth=3)
    couplings = learner.couplings
    assert torch.equal(couplings["1"].weight, couplings["2"].weight)
    assert couplings["1"].weight.data_ptr() != couplings["2"].weight.data_ptr()
    assert not torch.equal(couplings["0"].weight, couplings["1"].weight)
    bound = 64 ** -0.5  # nn.Linear's default initialisation
    assert couplings["0"].weight.abs().max() <= bound and couplings["0"].bias.abs().max() <= bound


def test_maple_vision_prompt_of_each_layer_is_the_coupled_text_prompt(model):
    learner = MaPLePromptLearner(model, CLASSNAMES, n_ctx=2, depth=3)
    with torch.no_grad():
        for i in range(3):  # make every coupling different
            learner.couplings[str(i)].weight.normal_(std=0.1)
    schedule = learner()
    for i in range(3):
        text = learner.ctx if i == 0 else learner.text_prompts[str(i)]
        assert schedule.text[i] is text
        torch.testing.assert_close(schedule.vision[i], learner.couplings[str(i)](text))
    text_in, vision_in = run_recording(model, learner)
    for i in (1, 2):
        coupled = learner.couplings[str(i)](learner.text_prompts[str(i)]).detach()
        torch.testing.assert_close(vision_in[i][:, -2:], coupled.expand(4, -1, -1))
        torch.testing.assert_close(text_in[i][:, 1:3],
                                   learner.text_prompts[str(i)].detach().expand(4, -1, -1))
    assert all(x.shape[1] == 1 + PATCHES + 2 for x in vision_in)
    assert not torch.allclose(vision_in[3][:, -2:], schedule.vision[2].detach().expand(4, -1, -1))


def test_maple_text_prompt_moves_both_towers(model):
    learner = MaPLePromptLearner(model, CLASSNAMES, n_ctx=2, depth=3)
    prompted = PromptedCLIP(model, learner)
    with torch.no_grad():
        img0, txt0 = prompted.features(images())
        perturb(learner.text_prompts["2"])
        img1, txt1 = prompted.features(images())
    assert not torch.allclose(img0, img1) and not torch.allclose(txt0, txt1)


@pytest.mark.parametrize("depth", [0, 4])
def test_maple_depth_must_fit_both_towers(model, depth):
    with pytest.raises(ValueError, match="PROMPT_DEPTH"):
        MaPLePromptLearner(model, CLASSNAMES, 2, depth)


# --------------------------------------------------------------------------- all methods


def learners(model):
    return {
        "IVLP": (IVLPPromptLearner(model, CLASSNAMES, 2, 2, 3, 3), PromptedCLIP),
        "language-only": (IVLPPromptLearner(model, CLASSNAMES, 4, 0, 3, 0), PromptedCLIP),
        "VPT": (VPTPromptLearner(model, CLASSNAMES, 4, 4), FixedTextPromptedCLIP),
        "MaPLe": (MaPLePromptLearner(model, CLASSNAMES, 2, 3), PromptedCLIP),
    }


@pytest.mark.parametrize("method", ["IVLP", "language-only", "VPT", "MaPLe"])
def test_sgd_steps_lower_the_loss_and_touch_only_the_learner(model, method):
    torch.manual_seed(0)
    learner, wrapper = learners(model)[method]
    prompted = wrapper(model, learner).train()
    optimizer = torch.optim.SGD(learner.parameters(), lr=0.5)
    batch, label = images(8, seed=3), torch.arange(8) % len(CLASSNAMES)
    frozen = {k: v.clone() for k, v in model.state_dict().items()}
    losses = []
    for _ in range(6):
        loss = F.cross_entropy(prompted(batch), label)
        optimizer.zero_grad()
        loss.backward()
        assert all(p.grad is not None for p in learner.parameters())
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 1e-3
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in frozen.items())


@pytest.mark.parametrize("text_width, vision_width", [(64, 128), (128, 64), (192, 192)])
def test_widths_come_from_the_loaded_clip(text_width, vision_width):
    model = tiny_clip(text_width, vision_width, text_layers=2, vision_layers=2)
    for learner in (IVLPPromptLearner(model, CLASSNAMES, 2, 2, 2, 2),
                    MaPLePromptLearner(model, CLASSNAMES, 2, 2)):
        schedule = learner()
        assert all(p.shape[-1] == text_width for p in schedule.text)
        assert all(p.shape[-1] == vision_width for p in schedule.vision)
        assert PromptedCLIP(model, learner)(images(2)).shape == (2, len(CLASSNAMES))


# --------------------------------------------------------------------------- checkpoints


def frozen_official(model: CLIP) -> dict[str, torch.Tensor]:
    """The frozen part of an official full-model state dict (CustomCLIP's module names)."""
    state = {f"image_encoder.{k}": v.clone() for k, v in model.visual.state_dict().items()}
    for key, value in model.state_dict().items():
        if key.startswith(("transformer.", "ln_final.", "positional_embedding", "text_projection")):
            state[f"text_encoder.{key}"] = value.clone()
    state["logit_scale"] = model.logit_scale.clone()
    return state


def official_vision_key(layer: str) -> str:
    if layer == "0":
        return "image_encoder.VPT"
    return f"image_encoder.transformer.resblocks.{layer}.VPT_shallow"


def official_ivlp_state(learner: IVLPPromptLearner, model: CLIP) -> dict[str, torch.Tensor]:
    state = frozen_official(model)
    state["prompt_learner.ctx"] = learner.ctx.detach().clone()
    for i, p in learner.vision_prompts.items():
        state[official_vision_key(i)] = p.detach().clone()
    for i, p in learner.text_prompts.items():
        state[f"text_encoder.transformer.resblocks.{i}.VPT_shallow"] = p.detach().clone()
    return state


def official_maple_state(learner: MaPLePromptLearner, model: CLIP) -> dict[str, torch.Tensor]:
    state = frozen_official(model)
    state["prompt_learner.ctx"] = learner.ctx.detach().clone()
    for i, coupling in learner.couplings.items():
        name = "proj" if i == "0" else f"compound_prompt_projections.{int(i) - 1}"
        state[f"prompt_learner.{name}.weight"] = coupling.weight.detach().clone()
        state[f"prompt_learner.{name}.bias"] = coupling.bias.detach().clone()
    for i, p in learner.text_prompts.items():
        state[f"prompt_learner.compound_prompts_text.{int(i) - 1}"] = p.detach().clone()
    return state


def write_official_checkpoint(directory, name: str, epoch: int, state: dict) -> None:
    """An official Dassl checkpoint: the whole model, the optimizer and a pickled scheduler."""
    n_cls = len(CLASSNAMES)
    state = {**state, "prompt_learner.token_prefix": torch.zeros(n_cls, 1, 64),
             "prompt_learner.token_suffix": torch.zeros(n_cls, 74, 64)}
    weight = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD([weight], lr=0.0035)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 5)
    folder = directory / name
    folder.mkdir(parents=True)
    torch.save({"state_dict": state, "epoch": epoch, "optimizer": optimizer.state_dict(),
                "scheduler": scheduler, "val_result": None}, folder / f"model.pth.tar-{epoch}")


def checkpoint_state(trainer_cls, model: CLIP, state: dict) -> dict:
    """What loading a checkpoint's state dict does for ``trainer_cls`` on ``model``."""
    return trainer_cls.checked_learner_state_dict(state, model, "tiny")


def official_vpt_state(learner, model):
    state = frozen_official(model)
    for i, p in learner.vision_prompts.items():
        state[official_vision_key(i)] = p.detach().clone()
    return state


@pytest.mark.parametrize("method", ["IVLP", "VPT", "MaPLe"])
def test_official_checkpoint_directories_load(tmp_path, model, method):
    trainer_cls, build, write_state = {
        "IVLP": (IVLP, lambda: IVLPPromptLearner(model, CLASSNAMES, 2, 3, 3, 4),
                 official_ivlp_state),
        "VPT": (VPT, lambda: VPTPromptLearner(model, CLASSNAMES, 3, 4), official_vpt_state),
        "MaPLe": (MaPLe, lambda: MaPLePromptLearner(model, CLASSNAMES, 2, 3),
                  official_maple_state),
    }[method]
    torch.manual_seed(1)
    trained = build()
    write_official_checkpoint(tmp_path, trainer_cls.model_name, 5,
                              write_state(trained, model))
    checkpoint = load_checkpoint(str(tmp_path / trainer_cls.model_name / "model.pth.tar-5"))
    assert checkpoint["epoch"] == 5
    torch.manual_seed(2)
    fresh = build()
    state = checkpoint_state(trainer_cls, model, checkpoint["state_dict"])
    fresh.load_state_dict(state, strict=True)
    wrapper = FixedTextPromptedCLIP if method == "VPT" else PromptedCLIP
    with torch.no_grad():
        torch.testing.assert_close(wrapper(model, fresh)(images()),
                                   wrapper(model, trained)(images()), atol=0, rtol=0)


@pytest.mark.parametrize("method", ["IVLP", "MaPLe"])
def test_a_checkpoint_of_another_backbone_is_reported(model, method):
    other = tiny_clip(seed=1)
    if method == "IVLP":
        state = official_ivlp_state(IVLPPromptLearner(other, CLASSNAMES, 2, 3, 3, 4), other)
    else:
        state = official_maple_state(MaPLePromptLearner(other, CLASSNAMES, 2, 3), other)
    trainer_cls = IVLP if method == "IVLP" else MaPLe
    with pytest.raises(ValueError, match="another backbone"):
        checkpoint_state(trainer_cls, model, state)
    checkpoint_state(trainer_cls, other, state)


@pytest.mark.parametrize("trainer_cls, learner", [
    (IVLP, lambda m: IVLPPromptLearner(m, CLASSNAMES, 2, 3, 3, 4)),
    (VPT, lambda m: VPTPromptLearner(m, CLASSNAMES, 3, 4)),
    (MaPLe, lambda m: MaPLePromptLearner(m, CLASSNAMES, 2, 3)),
])
def test_our_own_checkpoints_hold_only_what_trains_and_load_unchanged(model, trainer_cls, learner):
    state = learner(model).state_dict()
    mapped = trainer_cls.learner_state_dict(state)
    assert mapped.keys() == state.keys()
    assert all(mapped[k] is state[k] for k in state)


# --------------------------------------------------------------------------- configs


def test_config_nodes_have_the_official_defaults():
    cfg = get_cfg_default()
    assert dict(cfg.TRAINER.MAPLE) == {"N_CTX": 2, "CTX_INIT": "a photo of a", "PREC": "fp16",
                                       "PROMPT_DEPTH": 9}
    assert dict(cfg.TRAINER.IVLP) == {"N_CTX_VISION": 2, "N_CTX_TEXT": 2,
                                      "CTX_INIT": "a photo of a", "PREC": "fp16",
                                      "PROMPT_DEPTH_VISION": 9, "PROMPT_DEPTH_TEXT": 9}
    assert dict(cfg.TRAINER.VPT) == {"N_CTX_VISION": 2, "CTX_INIT": "a photo of a",
                                     "PREC": "fp16", "PROMPT_DEPTH_VISION": 1}


@pytest.mark.parametrize("path, node, values, lr, epochs", [
    ("MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml", "MAPLE", {"N_CTX": 2, "PROMPT_DEPTH": 9},
     0.0035, 5),
    ("MaPLe/vit_b16_c2_ep5_batch4_2ctx_cross_datasets.yaml", "MAPLE",
     {"N_CTX": 2, "PROMPT_DEPTH": 3}, 0.0026, 2),
    ("IVLP/vit_b16_c2_ep5_batch4_2+2ctx.yaml", "IVLP",
     {"N_CTX_VISION": 2, "N_CTX_TEXT": 2, "PROMPT_DEPTH_VISION": 12, "PROMPT_DEPTH_TEXT": 12},
     0.0035, 5),
    ("IVLP/vit_b16_c2_ep5_batch4_4ctx_language_only.yaml", "IVLP",
     {"N_CTX_VISION": 0, "N_CTX_TEXT": 4, "PROMPT_DEPTH_VISION": 0, "PROMPT_DEPTH_TEXT": 12},
     0.0025, 5),
    ("VPT/vit_b16_c2_ep5_batch4_4.yaml", "VPT", {"N_CTX_VISION": 8, "PROMPT_DEPTH_VISION": 12},
     0.0025, 5),
])
def test_official_config_files_merge(path, node, values, lr, epochs):
    cfg = get_cfg_default()
    cfg.merge_from_file(str(CONFIGS / path))
    trainer = cfg.TRAINER[node]
    assert {k: trainer[k] for k in values} == values
    assert trainer.CTX_INIT == "a photo of a" and trainer.PREC == "fp16"
    assert (cfg.OPTIM.LR, cfg.OPTIM.MAX_EPOCH, cfg.OPTIM.WARMUP_CONS_LR) == (lr, epochs, 1e-5)
    assert cfg.DATALOADER.TRAIN_X.BATCH_SIZE == 4 and tuple(cfg.INPUT.SIZE) == (224, 224)
    assert cfg.MODEL.BACKBONE.NAME == "ViT-B/16"


# --------------------------------------------------------------------------- with the engine

ENGINE_CASES = {  # trainer: (settings for the tiny 2-layer CLIP, official state writer)
    "IVLP": (["TRAINER.IVLP.PROMPT_DEPTH_TEXT", "2", "TRAINER.IVLP.PROMPT_DEPTH_VISION", "2"],
             official_ivlp_state),
    "VPT": (["TRAINER.VPT.N_CTX_VISION", "3", "TRAINER.VPT.PROMPT_DEPTH_VISION", "2"],
            official_vpt_state),
    "MaPLe": (["TRAINER.MAPLE.PROMPT_DEPTH", "2"], official_maple_state),
}


def engine_cfg(method: str, image_root: str, output_dir: str):
    from tests.engine.toy import ToyFolder  # noqa: F401  (registers the toy dataset)

    cfg = get_cfg_default()
    cfg.merge_from_list([
        "DATASET.ROOT", image_root, "DATASET.NAME", "ToyFolder", "TRAINER.NAME", method,
        "MODEL.BACKBONE.NAME", "tiny", "INPUT.SIZE", "(32, 32)", "OUTPUT_DIR", output_dir,
        "SEED", "1", "USE_CUDA", "False", "DATALOADER.NUM_WORKERS", "0",
        "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "DATALOADER.TEST.BATCH_SIZE", "6",
        "OPTIM.NAME", "sgd", "OPTIM.LR", "0.01", "OPTIM.MAX_EPOCH", "1",
        "TRAIN.CHECKPOINT_FREQ", "1", "VERBOSE", "False",
        f"TRAINER.{dict(IVLP='IVLP', VPT='VPT', MaPLe='MAPLE')[method]}.PREC", "fp32",
        *ENGINE_CASES[method][0],
    ])
    cfg.freeze()
    return cfg


@pytest.mark.parametrize("method", ["IVLP", "VPT", "MaPLe"])
def test_trainer_trains_saves_what_trains_and_evaluates_official_checkpoints(
        tmp_path, monkeypatch, caplog, method):
    from engine.trainer import build_trainer
    from tests.engine.toy import make_image_folder

    root = make_image_folder(str(tmp_path / "data"), per_class=2)
    trainer = build_trainer(engine_cfg(method, root, str(tmp_path / "out")))
    name = type(trainer).model_name
    assert trainer.get_model_names() == [name]
    trainer.train()
    learner = trainer.model.prompt_learner
    saved = load_checkpoint(str(tmp_path / "out" / name / "model.pth.tar-1"))
    assert saved["state_dict"].keys() == learner.state_dict().keys()

    # an official directory: the whole model, prompts under the official names
    official = tmp_path / "official"
    write_official_checkpoint(official, name, 3,
                              ENGINE_CASES[method][1](learner, trainer.clip_model))
    evaluator = build_trainer(engine_cfg(method, root, str(tmp_path / "eval")))
    evaluator.load_model(str(official), epoch=3)
    for key, value in learner.state_dict().items():
        assert torch.equal(evaluator.model.prompt_learner.state_dict()[key], value)
    accuracy = trainer.test()
    assert evaluator.test() == accuracy

    if method == "MaPLe":  # once: the command line spends seconds collecting env info
        check_official_command_line(tmp_path, monkeypatch, caplog, trainer, root, official,
                                    accuracy)


def check_official_command_line(tmp_path, monkeypatch, caplog, trainer, root, official,
                                accuracy: float) -> None:
    """``train.py --eval-only --model-dir DIR --load-epoch N`` on an official directory."""
    import train

    method = trainer.cfg.TRAINER.NAME
    monkeypatch.setenv("ENGINE_IMPORTS", "tests.engine.toy")
    cfg = engine_cfg(method, root, str(tmp_path / "cli"))
    node = f"TRAINER.{trainer.declaration.node}"
    opts = [item for key in ("DATASET.NAME", "MODEL.BACKBONE.NAME", "INPUT.SIZE",
                             "DATALOADER.NUM_WORKERS", "USE_CUDA", node)
            for item in flatten_node(key, cfg)]
    caplog.clear()
    with caplog.at_level("INFO"):
        train.cli(["--root", root, "--trainer", method, "--output-dir", str(tmp_path / "cli"),
                   "--eval-only", "--model-dir", str(official), "--load-epoch", "3", *opts])
    assert f"* accuracy: {accuracy:.1f}%" in caplog.text


def flatten_node(key: str, cfg) -> list[str]:
    """``KEY VALUE`` command-line pairs reproducing ``cfg``'s value (or node) at ``key``."""
    node = cfg
    for part in key.split("."):
        node = node[part]
    if isinstance(node, dict):
        return [item for sub in node for item in flatten_node(f"{key}.{sub}", cfg)]
    return [key, str(node)]
