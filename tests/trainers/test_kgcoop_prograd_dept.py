"""KgCoOp, ProGrad and DePT on the tiny CLIP: each part against its formula computed another way,
their initialisations and official checkpoint keys, and every new trainer taking real steps
with the engine on the synthetic Demo dataset."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import clip
import datasets  # noqa: F401  (registration)
import trainers  # noqa: F401  (registration)
from engine.config import get_cfg_default
from engine.trainer import build_trainer
from trainers.base import TrainedParts, build_prompted_model, embed_words
from trainers.dept import DecoupledHead, ExtrasLinearProbeKgCoOp, ExtrasLinearProbeMaPLe
from trainers.kgcoop import KgCoOp
from trainers.objective import HEAD_REGISTRY, PartContext
from trainers.prograd import ProGrad, project_conflicting
from trainers.templates import KGCOOP_TEMPLATES, PROGRAD_TEMPLATES

CLASSNAMES = ["face", "leopard", "sea_lion", "airplane"]
LABELS = torch.tensor([0, 1, 2, 3])


@pytest.fixture(scope="module")
def model():
    return clip.tiny_clip(seed=3).requires_grad_(False)


def images(n: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def config(*opts: str):
    cfg = get_cfg_default()
    cfg.merge_from_list(["DATASET.NAME", "OxfordPets", *opts])
    return cfg


def hand_crafted(model, template: str) -> torch.Tensor:
    prompts = [template.format(c.replace("_", " ")) for c in CLASSNAMES]
    return F.normalize(model.encode_text(clip.tokenize(prompts)), dim=-1)


def method_of(trainer, model, cfg):
    torch.manual_seed(0)
    learner = trainer.make_prompt_learner(cfg, CLASSNAMES, model)
    return trainer.assemble(cfg, model, CLASSNAMES, learner)


# --------------------------------------------------------------------------- KgCoOp


def test_kgcoop_loss_is_cross_entropy_plus_w_times_one_minus_mean_cosine(model):
    method = method_of(KgCoOp, model, config("TRAINER.COOP.CTX_INIT", "True",
                                             "TRAINER.COOP.W", "8.0"))
    assert method.objective.names == ["ce", "kg"]
    losses = method.losses(images(), LABELS)
    image_features, text_features = method.model.features(images())
    reference = hand_crafted(model, KGCOOP_TEMPLATES["OxfordPets"])
    cos = (text_features * reference).sum(-1) / (text_features.norm(dim=-1)
                                                 * reference.norm(dim=-1))
    logits = model.logit_scale.exp() * image_features @ text_features.t()
    expected = F.cross_entropy(logits, LABELS) + 8.0 * (1 - cos.mean())
    torch.testing.assert_close(losses.total, expected)
    assert 1e-4 < losses.terms["kg"].item() / 8.0 < 1  # the prompts differ from the reference


def test_kgcoop_ctx_init_true_starts_from_a_photo_of_a(model):
    learner = KgCoOp.make_prompt_learner(config("TRAINER.COOP.CTX_INIT", "True"), CLASSNAMES,
                                         model)
    torch.testing.assert_close(learner.ctx.data, embed_words(model, "a photo of a", 4))
    assert torch.equal(learner.class_tokens.tokens,
                       clip.tokenize([f"a photo of a {c.replace('_', ' ')}." for c in CLASSNAMES]))
    with pytest.raises(ValueError, match="give the words"):
        build_prompted_model(model, "CoOp", CLASSNAMES, ctx_init=True)


def test_kgcoop_official_files_lose_the_tensors_its_forward_never_reads():
    ctx = torch.randn(4, 64)
    official = {"ctx": ctx, "bias_vectors": torch.randn(1, 512), "token_prefix": torch.zeros(1),
                "meta_net.linear1.weight": torch.randn(512, 512),
                "meta_net.linear1.bias": torch.randn(512)}
    assert KgCoOp.learner_state_dict(official).keys() == {"ctx"}
    # DePT's whole-model file: the learner under prompt_learner., an alias of its meta_net,
    # an adapter, the frozen CLIP and the head
    dept = {f"prompt_learner.{k}": v for k, v in official.items()}
    dept.update({"meta_net.linear1.weight": torch.randn(512, 512), "adapter.fc.0.weight":
                 torch.randn(128, 512), "logit_scale": torch.ones(()),
                 "image_encoder.conv1.weight": torch.zeros(1), "linear_probe_proj.weight":
                 torch.randn(4, 64), "film_lp_img.scale": torch.ones(64)})
    trained = TrainedParts(torch.nn.Module(), None, DecoupledHead.module_names)
    trained.head_names = ("linear_probe_proj", "film_lp_img")
    mapped = ExtrasLinearProbeKgCoOp.trained_parts_state_dict(dept, trained)
    assert mapped.keys() == {"prompt_learner.ctx", "linear_probe_proj.weight", "film_lp_img.scale"}
    assert torch.equal(mapped["prompt_learner.ctx"], ctx)
    # CoCoOp's two-layer meta_net is kept when KgCoOp's term runs on CoCoOp prompts
    cocoop = {"ctx": ctx, "meta_net.linear1.weight": torch.randn(4, 64),
              "meta_net.linear2.weight": torch.randn(64, 4)}
    assert KgCoOp.learner_state_dict(cocoop).keys() == cocoop.keys()


# --------------------------------------------------------------------------- ProGrad


def test_prograd_ctx_init_true_puts_its_template_words_last(model):
    learner = ProGrad.make_prompt_learner(config("TRAINER.COOP.CTX_INIT", "True",
                                                 "TRAINER.COOP.N_CTX", "12"), CLASSNAMES, model)
    words = PROGRAD_TEMPLATES["OxfordPets"].replace(" {}.", "")
    assert words == "a type of pet, a photo of a"
    assert torch.equal(learner.ctx.data[:4], torch.zeros(4, 64))
    torch.testing.assert_close(learner.ctx.data[4:], embed_words(model, words, 8))
    assert torch.equal(learner.class_tokens.tokens[0],
                       clip.tokenize(f"X X X X {words} face.")[0])
    with pytest.raises(ValueError, match="at least the number of initial words"):
        ProGrad.make_prompt_learner(config("TRAINER.COOP.CTX_INIT", "True",
                                           "TRAINER.COOP.N_CTX", "4"), CLASSNAMES, model)


def test_projection_removes_lambda_times_the_conflicting_component():
    g = torch.tensor([[3.0, 4.0]])
    d = torch.tensor([[-1.0, 1.0]])  # d . g = 1 > 0: no conflict
    assert torch.equal(project_conflicting(d, g, 1.0), d)
    d = torch.tensor([[-2.0, -1.0]])  # d . g = -10: conflict
    unit = g / 5
    torch.testing.assert_close(project_conflicting(d, g, 1.0), d - (-2.0) * unit)
    torch.testing.assert_close(project_conflicting(d, g, 0.5), d - 0.5 * (-2.0) * unit)
    assert (project_conflicting(d, g, 1.0) * g).sum().abs() < 1e-6  # orthogonal to g
    assert torch.equal(project_conflicting(d, torch.zeros(1, 2), 1.0), d)
    assert project_conflicting(None, g, 1.0) is None


def prograd_method(model, *opts: str):
    return method_of(ProGrad, model, config("TRAINER.COOP.N_CTX", "12", "TRAINER.COOP.CTX_INIT",
                                            "True", "LOSS.NAME", "prograd", *opts))


def test_prograd_step_follows_the_official_two_backward_procedure(model):
    """Our hook against the official recipe: backward the distillation (retain the graph),
    keep its gradient, zero, backward the cross-entropy, project where they conflict."""
    method = prograd_method(model, "LOSS.T", "2.0", "LOSS.LAMBDA", "0.8")
    ctx = method.learner.ctx
    assert method.objective.names == ["ce", "prograd_kl"]
    # the distillation term: T² · CE(softmax(z0 / T), z / T) against the frozen CLIP's logits
    frozen = F.normalize(model.encode_image(images()), dim=-1)
    z0 = model.logit_scale.exp() * frozen @ hand_crafted(
        model, PROGRAD_TEMPLATES["OxfordPets"]).t()
    labels = z0.argmin(dim=1)  # what the zero-shot model finds least likely: a conflict
    losses = method.losses(images(), labels)
    z = method.model(images())
    kl = -(F.softmax(z0 / 2, -1) * F.log_softmax(z / 2, -1)).sum(1).mean() * 4
    torch.testing.assert_close(losses.terms["prograd_kl"], kl)
    torch.testing.assert_close(losses.total, F.cross_entropy(z, labels))

    kl.backward(retain_graph=True)
    general = ctx.grad.clone()
    ctx.grad = None
    F.cross_entropy(z, labels).backward()
    plain = ctx.grad.clone()
    ctx.grad = None
    dot = (plain * general).sum() / general.norm()
    assert dot < 0  # the case the rule is for (the test would say nothing otherwise)
    expected = plain - 0.8 * dot * general / general.norm()

    method.backward(losses, lambda total: total.backward())
    torch.testing.assert_close(ctx.grad, expected)


def test_prograd_leaves_an_aligned_gradient_alone(model):
    method = prograd_method(model, "LOSS.LAMBDA", "1.0")
    ctx = method.learner.ctx
    losses = method.losses(images(), LABELS)
    general = torch.autograd.grad(losses.terms["prograd_kl"], ctx, retain_graph=True)[0]
    # a loss whose gradient is aligned with the general direction: nothing to project
    losses.total = losses.terms["prograd_kl"] * 1.5
    method.backward(losses, lambda total: total.backward())
    assert general.abs().max() > 0.1  # the tolerance below is far under a projection's change
    torch.testing.assert_close(ctx.grad, 1.5 * general, atol=1e-4, rtol=1e-3)


def test_prograd_needs_its_loss_name():
    cfg = config("TRAINER.COOP.PREC", "fp32")
    with pytest.raises(ValueError, match="'prograd'"):
        ProGrad.check_cfg(cfg)


# --------------------------------------------------------------------------- DePT


def dept_method(model, *opts: str):
    return method_of(ExtrasLinearProbeMaPLe, model, config(
        "TRAINER.MAPLE.PROMPT_DEPTH", "2", "DATASET.SUBSAMPLE_CLASSES", "base", *opts))


def test_dept_loss_and_fused_logits_follow_the_formulas(model):
    method = dept_method(model, "TRAINER.LINEAR_PROBE.WEIGHT", "0.7")
    head = method.model.head
    assert isinstance(head, DecoupledHead) and method.objective.names == ["ce", "head_ce"]
    with torch.no_grad():  # FiLM away from the identity, so that it counts
        for film in (head.film_lp_img, head.film_lp_text):
            film.scale.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(1))
            film.bias.normal_(0, 0.1, generator=torch.Generator().manual_seed(2))
    schedule = method.learner()
    text = model.encode_text_embeddings(schedule.text_embeddings, schedule.eot, schedule.text)
    image = model.encode_image(images(), schedule.vision)
    similarity = model.logit_scale.exp() * F.normalize(image, dim=-1) @ F.normalize(
        text, dim=-1).t()
    film_image = head.film_lp_img.scale * image + head.film_lp_img.bias
    film_text = head.film_lp_text.scale * text + head.film_lp_text.bias
    linear = head.linear_probe_proj
    probe = linear(torch.cat([film_text[LABELS], film_image]))
    expected = (0.3 * F.cross_entropy(similarity, LABELS)
                + 0.7 * F.cross_entropy(probe, torch.cat([LABELS, LABELS])))
    torch.testing.assert_close(method.losses(images(), LABELS).total, expected)
    with torch.no_grad():
        fused = method.model.eval()(images())
    torch.testing.assert_close(fused, 0.3 * similarity + 0.7 * linear(film_image))


def test_dept_head_serves_only_the_classes_it_learned(model):
    for subsample, name, applies in (("base", "OxfordPets", True), ("new", "OxfordPets", False),
                                     ("all", "OxfordPets", False), ("all", "ImageNetV2", True)):
        cfg = config("DATASET.SUBSAMPLE_CLASSES", subsample, "DATASET.NAME", name)
        head = HEAD_REGISTRY.build("DePT", PartContext(cfg, model, CLASSNAMES))
        assert (head is not None) == applies
    method = dept_method(model, "DATASET.SUBSAMPLE_CLASSES", "new")
    with torch.no_grad():
        image_features, text_features = method.model.features(images())
        logits = method.model.eval()(images())
    torch.testing.assert_close(logits, model.logit_scale.exp() * image_features @ text_features.t())


def test_dept_similarity_head_without_fusion(model):
    method = dept_method(model, "TRAINER.LINEAR_PROBE.TYPE", "similarity",
                         "TRAINER.LINEAR_PROBE.TEST_TIME_FUSION", "False",
                         "TRAINER.FILM.LINEAR_PROBE", "False")
    assert not hasattr(method.model.head, "linear_probe_proj")
    assert list(method.model.head.parameters()) == []
    with torch.no_grad():
        image_features, text_features = method.model.features(images())
        logits = method.model.eval()(images())
    # no FiLM, no linear layer, no fusion: the head's logits are the similarity logits
    torch.testing.assert_close(logits, model.logit_scale.exp() * image_features @ text_features.t())
    with pytest.raises(ValueError, match="'linear' or 'similarity'|linear, similarity"):
        dept_method(model, "TRAINER.LINEAR_PROBE.TYPE", "mlp")


def test_official_dept_maple_file_maps_onto_the_learner_and_the_head(model):
    method = dept_method(model)
    trained = method.trained
    learner = method.learner
    official = {"prompt_learner.ctx": learner.ctx.detach().clone() + 1,
                "prompt_learner.proj.weight": learner.couplings["0"].weight.detach() + 1,
                "prompt_learner.proj.bias": learner.couplings["0"].bias.detach() + 1,
                "prompt_learner.compound_prompts_text.0": learner.text_prompts["1"].detach() + 1,
                "prompt_learner.compound_prompt_projections.0.weight":
                    learner.couplings["1"].weight.detach() + 1,
                "prompt_learner.compound_prompt_projections.0.bias":
                    learner.couplings["1"].bias.detach() + 1,
                "prompt_learner.token_prefix": torch.zeros(4, 1, 64),
                "image_encoder.conv1.weight": model.visual.conv1.weight.clone(),
                "logit_scale": model.logit_scale.clone()}
    official.update({k: v.detach() + 1 for k, v in method.model.head.state_dict().items()})
    state = ExtrasLinearProbeMaPLe.trained_parts_state_dict(official, trained)
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    trained.load_state_dict(state, strict=True)
    assert all(torch.equal(trained.state_dict()[k], v + 1) for k, v in before.items())


# --------------------------------------------------------------------------- with the engine


NEW_TRAINERS = {  # trainer: (objective, step hooks, head)
    "KgCoOp": (["ce", "kg"], [], False),
    "ProGrad": (["ce", "prograd_kl"], ["ProGradHook"], False),
    "ExtrasLinearProbeCoOp": (["ce", "head_ce"], [], True),
    "ExtrasLinearProbeCoCoOp": (["ce", "head_ce"], [], True),
    "ExtrasLinearProbeKgCoOp": (["ce", "kg", "head_ce"], [], True),
    "ExtrasLinearProbeMaPLe": (["ce", "head_ce"], [], True),
}


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("demo"))


@pytest.mark.parametrize("name", sorted(NEW_TRAINERS))
def test_every_new_trainer_takes_real_steps(tmp_path, demo_root, name):
    terms, hooks, has_head = NEW_TRAINERS[name]
    cfg = get_cfg_default()
    cfg.merge_from_file("configs/datasets/demo.yaml")
    cfg.merge_from_file(f"configs/trainers/{name}/demo_tiny.yaml")
    cfg.merge_from_list([
        "DATASET.ROOT", demo_root, "OUTPUT_DIR", str(tmp_path / "out"), "TRAINER.NAME", name,
        "SEED", "1", "USE_CUDA", "False", "OPTIM.MAX_EPOCH", "1", "DATASET.NUM_SHOTS", "1",
        "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "TEST.NO_TEST", "True", "VERBOSE", "False",
        "OPTIM.LR", "0.05"])
    trainer = build_trainer(cfg)
    assert trainer.objective.names == terms
    assert [type(h).__name__ for h in trainer.method.step_hooks] == hooks
    assert (trainer.model.head is not None) == has_head
    trained = trainer._models[trainer.model_name]
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    trainer.train()
    after = trained.state_dict()
    assert all(not torch.equal(after[k], v) for k, v in before.items())
    assert not any(p.requires_grad for p in trainer.clip_model.parameters())
    saved = torch.load(tmp_path / "out" / trainer.model_name / "model.pth.tar-1",
                       weights_only=True)
    assert saved["state_dict"].keys() == after.keys()


def test_dept_imagenet_classifier_keeps_the_rows_of_a_variants_classes(tmp_path):
    """ImageNet-A/R hold 200 of ImageNet's classes: the official code keeps the classifier rows
    of the WordNet ids that have a folder in the variant."""
    wnids = [f"n{i:08d}" for i in range(6)]
    (tmp_path / "classnames.txt").write_text("".join(f"{w} class {i}\n"
                                                     for i, w in enumerate(wnids)))
    for wnid in (wnids[1], wnids[4]):
        (tmp_path / "images" / wnid).mkdir(parents=True)
    dataset = type("Variant", (), {"dataset_dir": str(tmp_path),
                                   "image_dir": str(tmp_path / "images")})()
    head = DecoupledHead(dim=8, n_cls=2)
    state = {"linear_probe_proj.weight": torch.arange(6.0).repeat(8, 1).t(),
             "linear_probe_proj.bias": torch.arange(6.0), "film_lp_img.scale": torch.ones(8)}
    adapted = head.adapt_state_dict(state, dataset)
    assert torch.equal(adapted["linear_probe_proj.bias"], torch.tensor([1.0, 4.0]))
    assert torch.equal(adapted["linear_probe_proj.weight"][:, 0], torch.tensor([1.0, 4.0]))
    assert adapted["film_lp_img.scale"] is state["film_lp_img.scale"]
    with pytest.raises(ValueError, match="classes it was trained on"):
        head.adapt_state_dict(state, object())
