"""TCP, MMA and CLIP-LoRA as trainers: real steps on the demo data, what their checkpoints hold,
CLIP-LoRA's iteration schedule, and the combination configs (each part active)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import clip
import datasets  # noqa: F401  (registration)
import trainers  # noqa: F401  (registration)
from engine import TRAINER_REGISTRY
from engine.config import get_cfg_default
from engine.trainer import build_trainer
from trainers.adapted import AdaptedCLIP
from trainers.clip_lora import CLIPLoRALearner, positions
from trainers.mma import MMAdapterLearner
from trainers.regularizers import GaussianPromptAggregation
from trainers.tcp import TCPPromptLearner

REPO = Path(__file__).resolve().parents[2]
CLASSNAMES = ["face", "leopard", "sea_lion", "airplane"]
LABELS = torch.tensor([0, 1, 2, 3])


@pytest.fixture(scope="module")
def model():
    return clip.tiny_clip(seed=3, text_layers=3, vision_layers=3).requires_grad_(False)


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("demo"))


def images(n: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def demo_trainer(name: str, root: str, out: Path, *opts: str):
    cfg = get_cfg_default()
    cfg.merge_from_file("configs/datasets/demo.yaml")
    cfg.merge_from_file(str(REPO / f"configs/trainers/{name}/demo_tiny.yaml"))
    cfg.merge_from_list([
        "DATASET.ROOT", root, "OUTPUT_DIR", str(out), "TRAINER.NAME", name, "SEED", "1",
        "USE_CUDA", "False", "OPTIM.MAX_EPOCH", "1", "DATASET.NUM_SHOTS", "1",
        "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "TEST.NO_TEST", "True", "VERBOSE", "False",
        *opts])
    return build_trainer(cfg)


@pytest.mark.parametrize("name, terms, learner_cls, model_name", [
    ("TCP", ["ce", "kg"], TCPPromptLearner, "prompt_learner"),
    ("MultiModalAdapter", ["ce"], MMAdapterLearner, "adapter_learner"),
    ("CLIPLoRA", ["ce"], CLIPLoRALearner, "lora"),
])
def test_trainer_takes_real_steps_and_saves_only_what_trains(tmp_path, demo_root, name, terms,
                                                             learner_cls, model_name,
                                                             monkeypatch):
    monkeypatch.chdir(REPO)
    opts = ["TRAINER.CLIPLORA.N_ITERS", "2", "TRAINER.CLIPLORA.DROPOUT_RATE", "0.0"] if (
        name == "CLIPLoRA") else []
    trainer = demo_trainer(name, demo_root, tmp_path / "out", *opts)
    assert trainer.objective.names == terms and trainer.model_name == model_name
    assert isinstance(trainer.model.prompt_learner, learner_cls)
    frozen = {k: v.clone() for k, v in trainer.clip_model.state_dict().items()}
    trained = trainer._models[model_name]
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    trainer.train()
    after = trained.state_dict()
    moved = [k for k, v in before.items() if not torch.equal(after[k], v)]
    # LoRA's B starts at zero: one step moves B; A moves from the second step on
    assert moved == list(before), sorted(set(before) - set(moved))
    assert all(torch.equal(v, trainer.clip_model.state_dict()[k]) for k, v in frozen.items())
    saved = torch.load(tmp_path / "out" / model_name / f"model.pth.tar-{trainer.max_epoch}",
                       weights_only=True)
    assert saved["state_dict"].keys() == after.keys()
    assert not any(k.startswith(("transformer.", "visual.", "token_embedding"))
                   for k in saved["state_dict"])


def test_clip_lora_counts_iterations_not_epochs(tmp_path, demo_root, monkeypatch):
    """N_ITERS x NUM_SHOTS optimizer steps, the cosine stepped each one, the last epoch cut."""
    monkeypatch.chdir(REPO)
    trainer = demo_trainer("CLIPLoRA", demo_root, tmp_path / "out", "TRAINER.CLIPLORA.N_ITERS",
                           "3", "DATASET.NUM_SHOTS", "2", "DATALOADER.TRAIN_X.BATCH_SIZE", "3")
    batches = len(trainer.train_loader_x)
    assert trainer.total_iters == 6
    assert trainer.max_epoch == -(-6 // batches)
    steps = []
    trainer.optim.register_step_post_hook(lambda *args: steps.append(1))
    trainer.train()
    assert len(steps) == 6
    assert trainer.sched.last_epoch == 6
    assert trainer.get_current_lr() == pytest.approx(1e-6)


def test_clip_lora_positions_follow_the_official_tables():
    assert positions("bottom", 12) == [0, 1, 2, 3] and positions("mid", 12) == [4, 5, 6, 7]
    assert positions("up", 12) == [8, 9, 10, 11] and positions("half-up", 12) == list(range(6, 12))
    assert positions("top3", 12) == [9, 10, 11] and positions("all", 12) == list(range(12))
    assert positions("half-up", 24) == list(range(12, 24))
    with pytest.raises(ValueError, match="POSITION 'middle' is not one of"):
        positions("middle", 12)
    with pytest.raises(ValueError, match="holds no block"):
        positions("bottom", 2)


def test_clip_lora_dropout_acts_on_the_update_only_in_training(model):
    learner = CLIPLoRALearner(model, CLASSNAMES, position="all", r=2, dropout_rate=1.0)
    for p in learner.parameters():
        torch.nn.init.normal_(p, std=0.3)
    prompted = AdaptedCLIP(model, learner)
    with torch.no_grad():
        plain = model.encode_image(images())
        prompted.train()  # every update's input dropped: CLIP as it is
        torch.testing.assert_close(prompted.output(images()).image_embeddings, plain)
        prompted.eval()
        assert not torch.allclose(prompted.output(images()).image_embeddings, plain, atol=1e-3)


def test_mma_rejects_layers_it_cannot_adapt(model):
    with pytest.raises(ValueError, match="1 <= START <= END <= 3"):
        MMAdapterLearner(model, CLASSNAMES, start=0, end=3)
    with pytest.raises(ValueError, match="1 <= START <= END <= 3"):
        MMAdapterLearner(model, CLASSNAMES, start=2, end=4)


def test_tcp_rejects_other_context_lengths_and_layers(model):
    with pytest.raises(ValueError, match="set TRAINER.COOP.N_CTX 4"):
        TCPPromptLearner(model, CLASSNAMES, n_ctx=16)
    with pytest.raises(ValueError, match="text layer 1 .. 2"):
        TCPPromptLearner(model, CLASSNAMES, layer=3)


# --------------------------------------------------------------------------- combinations

COMBINATIONS = {  # config: (trainer, learner class, terms, tiny overrides)
    "PromptSRC/vit_b16_c2_ep20_batch4_tcp": (
        "PromptSRC", TCPPromptLearner, ["ce", "scl_text", "scl_image", "scl_logits"],
        ["TRAINER.TCP.LAYER", "2"]),
    "MultiModalAdapter/vit_b16_ep5_kgcoop": (
        "MultiModalAdapter", MMAdapterLearner, ["ce", "kg"],
        ["TRAINER.MMADAPTER.ADAPTER_START", "2", "TRAINER.MMADAPTER.ADAPTER_END", "3"]),
    "PromptSRC/vit_b16_ep20_batch4_clip_lora": (
        "PromptSRC", CLIPLoRALearner, ["ce", "scl_text", "scl_image", "scl_logits"], []),
}


@pytest.mark.parametrize("config", sorted(COMBINATIONS))
def test_combination_configs_run_the_right_parts(model, config):
    trainer, learner_cls, terms, overrides = COMBINATIONS[config]
    cfg = get_cfg_default()
    cfg.merge_from_file(str(REPO / "configs" / "trainers" / f"{config}.yaml"))
    cfg.merge_from_list(["MODEL.BACKBONE.NAME", "tiny", "INPUT.SIZE", "(32, 32)", *overrides])
    cls = TRAINER_REGISTRY.get(trainer)
    cls.check_cfg(cfg)
    torch.manual_seed(0)
    learner = cls.make_prompt_learner(cfg, CLASSNAMES, model)
    method = cls.assemble(cfg, model, CLASSNAMES, learner)
    assert isinstance(method.learner, learner_cls)
    assert method.objective.names == terms
    before = {k: v.clone() for k, v in method.trained.state_dict().items()}
    optimizer = torch.optim.SGD(method.trained.parameters(), lr=0.1)
    for _ in range(2):  # LoRA's B starts at zero: A moves from the second step on
        optimizer.zero_grad()
        losses = method.losses(images(), LABELS)
        method.backward(losses, lambda total: total.backward())
        optimizer.step()
    after = method.trained.state_dict()
    assert all(not torch.equal(after[k], v) for k, v in before.items())
    out = method.model.output(images(), frozen=method.objective.needs_frozen_image)
    if method.objective.needs_frozen_image:
        # PromptSRC's frozen image features are CLIP's own, not the adapted ones
        with torch.no_grad():
            plain = torch.nn.functional.normalize(model.encode_image(images()), dim=-1)
        torch.testing.assert_close(out.frozen_image_features, plain)
    if trainer == "PromptSRC":  # the aggregation takes the learner's tensors and loads back
        gpa = GaussianPromptAggregation(1.5, 1.0, 2)
        gpa.accumulate(1, before)
        gpa.accumulate(2, after)
        assert gpa.complete
        method.trained.load_state_dict(gpa.aggregate, strict=True)


def test_clip_lora_trainer_loads_an_official_lora_file(tmp_path, demo_root, monkeypatch):
    """TRAINER.CLIPLORA.LORA_FILE: a file in the official save_lora format (layers in
    apply_lora's order: text blocks, then vision blocks) fills the learner."""
    monkeypatch.chdir(REPO)
    g = torch.Generator().manual_seed(5)
    names = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "proj"}
    weights = {f"layer_{k}": {name: {"w_lora_A": torch.randn(4, 64, generator=g),
                                     "w_lora_B": torch.randn(64, 4, generator=g)}
                              for name in names.values()} for k in range(4)}
    metadata = {"r": 4, "alpha": 1, "encoder": "both", "params": ["q", "k", "v", "o"],
                "position": "all"}
    path = tmp_path / "lora_weights.pt"
    torch.save({"weights": weights, "metadata": metadata}, path)
    trainer = demo_trainer("CLIPLoRA", demo_root, tmp_path / "out",
                           "TRAINER.CLIPLORA.LORA_FILE", str(path))
    state = trainer.model.prompt_learner.state_dict()
    assert torch.equal(state["text.1.k_proj.w_lora_A"], weights["layer_1"]["k_proj"]["w_lora_A"])
    assert torch.equal(state["vision.0.proj.w_lora_B"], weights["layer_2"]["proj"]["w_lora_B"])
    metadata["position"] = "up"
    torch.save({"weights": weights, "metadata": metadata}, path)
    with pytest.raises(ValueError, match="set TRAINER.CLIPLORA.POSITION 'up'"):
        demo_trainer("CLIPLoRA", demo_root, tmp_path / "out2", "TRAINER.CLIPLORA.LORA_FILE",
                     str(path))
