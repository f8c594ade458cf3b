"""CLIP-LoRA against its official code's outputs on the deterministic ViT-B/16 (fixtures written
by tools/parity/clip_lora.py running the official ``apply_lora``): eval logits, image and text
features, the training loss and the gradients of every LoRA matrix, for the defaults (both
towers, all blocks, q/k/v, rank 2) and for the vision tower's top 3 blocks with q/k/v/o at rank
4, alpha 2; and the official ``save_lora`` file of the latter loads (what
TRAINER.CLIPLORA.LORA_FILE does).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.checkpoint import load_checkpoint
from engine.config import get_cfg_default
from tests.parity import recipe
from tests.parity.test_kgcoop_prograd_dept_parity import TOL
from tests.parity.test_tcp_parity import assert_eval_matches, assert_grad
from trainers.clip_lora import CLIPLoRA

OFFICIAL_FILE = recipe.FIXTURES / "CLIPLoRA_vision_top3_r4_lora.pt"


def lora_config(spec: dict):
    cfg = get_cfg_default()
    flags = spec["flags"]
    cfg.merge_from_list(["TRAINER.CLIPLORA.POSITION", flags["position"],
                         "TRAINER.CLIPLORA.ENCODER", flags["encoder"],
                         "TRAINER.CLIPLORA.PARAMS", flags["params"], "TRAINER.CLIPLORA.R",
                         flags["r"], "TRAINER.CLIPLORA.ALPHA", flags["alpha"],
                         "TRAINER.CLIPLORA.DROPOUT_RATE", flags["dropout_rate"],
                         "TRAINER.CLIPLORA.PREC", "fp32"])
    return cfg


def official_to_ours(name: str) -> str:
    """``[visual.]transformer.resblocks.<i>.attn.<matrix>.<A|B>`` -> our learner's key."""
    tower = "vision" if name.startswith("visual.") else "text"
    block = name.split("resblocks.")[1].split(".")[0]
    return f"{tower}.{block}.{name.split('.attn.')[1]}"


def lora_method(spec: dict, parity_clip, values: dict | None = None):
    cfg = lora_config(spec)
    learner = CLIPLoRA.make_prompt_learner(cfg, spec["classnames"], parity_clip)
    if values is not None:
        learner.load_state_dict({official_to_ours(k): v for k, v in values.items()})
    return CLIPLoRA.assemble(cfg, parity_clip, spec["classnames"], learner)


@pytest.mark.parametrize("name", ["CLIPLoRA", "CLIPLoRA_vision_top3_r4"])
def test_clip_lora_reproduces_official_logits_loss_and_gradients(parity_clip, name):
    spec, expected = recipe.fixture(name)
    method = lora_method(spec, parity_clip, recipe.lora_trainable_tensors(spec["trainable"]))
    learner = method.learner
    assert sorted(official_to_ours(n) for n, _ in spec["trainable"]) == sorted(
        k for k, _ in learner.named_parameters())
    tokens = learner.class_tokens.tokens
    assert torch.equal(tokens, parity_clip.tokenizer(spec["prompts"]))
    images, labels = recipe.images(), torch.tensor(spec["labels_for_loss"])
    assert_eval_matches(method, expected)
    method.model.train()
    for module in learner.modules():  # the fixture's training step ran without dropout
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    losses = method.losses(images, labels)
    assert abs(losses.total.item() - spec["loss"]) < TOL
    method.backward(losses, lambda total: total.backward())
    ours = {k: p.grad for k, p in learner.named_parameters()}
    for key, grad in {**expected["grads"], **expected["grad_summaries"]}.items():
        assert_grad(ours[official_to_ours(key)], grad)


def test_official_lora_file_loads_and_reproduces_its_logits(parity_clip, tmp_path):
    spec, expected = recipe.fixture("CLIPLoRA_vision_top3_r4")
    cfg = lora_config(spec)
    learner = CLIPLoRA.make_prompt_learner(cfg, spec["classnames"], parity_clip)
    learner.load_official(load_checkpoint(str(OFFICIAL_FILE)), str(OFFICIAL_FILE))
    values = recipe.lora_trainable_tensors(spec["trainable"])
    assert all(torch.equal(learner.state_dict()[official_to_ours(k)], v)
               for k, v in values.items())
    method = CLIPLoRA.assemble(cfg, parity_clip, spec["classnames"], learner)
    method.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(method.model(recipe.images()), expected["logits"], atol=TOL,
                                   rtol=0)
    # a file saved with other settings names the key to change
    data = load_checkpoint(str(OFFICIAL_FILE))
    data["metadata"]["r"] = 8
    with pytest.raises(ValueError, match="TRAINER.CLIPLORA.R 8"):
        learner.load_official(data, "the file")
    with pytest.raises(ValueError, match="not an official CLIP-LoRA file"):
        learner.load_official({"state_dict": {}}, "the file")
    assert Path(OFFICIAL_FILE).stat().st_size < 400_000
