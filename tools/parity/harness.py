"""Run an official prompt-learning implementation from the outside, on the parity recipe.

The generators in this folder import an official repository's own modules (its Dassl, its
``clip``, its trainer) from a checkout given on the command line, build the official trainer on
the deterministic CLIP ViT-B/16 of ``tests/parity/recipe.py`` and record what it computes. Nothing
of the official code is edited or copied: only module-level hooks are replaced (where the
official code would download weights, read a dataset, or call ``.cuda()``), and the optimiser
step is replaced by a recorder so that the gradients it would apply can be stored.

Run the generators with a Python that can import the official code's dependencies (a separate
virtual environment, see README.md). The official repositories ship packages named ``clip``,
``trainers`` and ``datasets``, like this repository, so this module never puts the repository
root on ``sys.path``: the recipe is loaded from its file.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.machinery
import importlib.util
import inspect
import json
import logging
import sys
import tempfile
import types
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace

import torch
from official_cfg import load_train_module, official_cfg

LOG = logging.getLogger("parity")
REPO_ROOT = Path(__file__).resolve().parents[2]
MAX_FIXTURE_BYTES = 900 * 1024
SEEDS = {"weights": 20261122, "trainable": 11, "images": 7}


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def load_recipe() -> ModuleType:
    """``tests/parity/recipe.py`` loaded from its file (its package name would clash)."""
    path = REPO_ROOT / "tests" / "parity" / "recipe.py"
    spec = importlib.util.spec_from_file_location("parity_recipe", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"the parity recipe is missing: {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stub(name: str, attrs: dict) -> None:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    module.__dict__.update(attrs)
    sys.modules[name] = module


def use_official(code_dir: Path, dassl_dir: Path, stubs: dict[str, dict] | None = None) -> None:
    """Put an official checkout (and the Dassl it runs on) first on ``sys.path``.

    ``stubs`` names third-party modules that the official package imports at module level but
    that no computation recorded here uses (dataset toolkits); each is replaced by an empty
    module with the given attributes, only when it cannot be imported. The runtime shims
    below (``.cuda()`` on a CPU machine, the schedulers' ``verbose``) are installed too.
    """
    for path in (code_dir, dassl_dir):
        if not (path / "dassl").is_dir() and not (path / "trainers").is_dir():
            raise FileNotFoundError(f"{path} holds neither dassl/ nor trainers/: "
                                    "pass the work tree of the official checkout")
    sys.path[:0] = [str(code_dir), str(dassl_dir)]
    for name, attrs in (stubs or {}).items():
        if name in sys.modules:
            continue
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            LOG.info("stubbing the unused module %s", name)
            _stub(name, attrs)
    cuda_calls_stay_on_cpu()
    schedulers_take_verbose()


def stub_submodule(name: str, attrs: dict) -> None:
    """Replace one official submodule that imports an unavailable toolkit (parent imported)."""
    parent = name.rpartition(".")[0]
    if parent:
        importlib.import_module(parent)
    _stub(name, attrs)


def cuda_calls_stay_on_cpu() -> None:
    """Some official constructors call ``.cuda()`` unconditionally; on this CPU run the model
    stays where it is."""
    if torch.cuda.is_available():
        return
    torch.nn.Module.cuda = lambda self, device=None: self  # type: ignore[method-assign]
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]


def schedulers_take_verbose() -> None:
    """Dassl's warm-up schedulers pass ``verbose`` positionally to ``LRScheduler.__init__``,
    which newer torch no longer accepts; the schedulers play no part in what is recorded."""
    scheduler = torch.optim.lr_scheduler.LRScheduler
    init = scheduler.__init__
    if "verbose" in inspect.signature(init).parameters:
        return

    def accept_verbose(self, optimizer, last_epoch=-1, verbose=None) -> None:
        init(self, optimizer, last_epoch)

    scheduler.__init__ = accept_verbose  # type: ignore[method-assign]


def clip_loader(official_clip: ModuleType, state_dict: dict[str, torch.Tensor]) -> Callable:
    """A replacement for the official ``load_clip_to_cpu(cfg)``: the official
    ``clip.build_model`` on the recipe's weights instead of a downloaded checkpoint."""

    def load_clip_to_cpu(cfg) -> torch.nn.Module:
        if cfg.MODEL.BACKBONE.NAME != "ViT-B/16":
            raise ValueError(f"the recipe is a ViT-B/16, not {cfg.MODEL.BACKBONE.NAME}")
        return official_clip.build_model(dict(state_dict))

    return load_clip_to_cpu


@contextlib.contextmanager
def without_fp16_rounding() -> Iterator[None]:
    """The official blocks round the deeper prompts with ``.half()`` even in fp32; inside this
    context ``Tensor.half`` returns the tensor unchanged (what a fp32 re-implementation
    computes)."""
    half = torch.Tensor.half
    torch.Tensor.half = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.Tensor.half = half  # type: ignore[method-assign]


def fake_data_manager(classnames: list[str], **extra) -> SimpleNamespace:
    """What the official ``build_model`` reads from a Dassl ``DataManager``."""
    return SimpleNamespace(dataset=SimpleNamespace(classnames=list(classnames)),
                           num_classes=len(classnames), num_source_domains=1,
                           lab2cname=dict(enumerate(classnames)), **extra)


def build_trainer(trainer_cls: type, cfg, dm: SimpleNamespace, extra: Callable | None = None):
    """The official trainer, built by its own ``__init__`` on ``dm`` instead of a dataset."""

    class Harness(trainer_cls):
        def build_data_loader(self) -> None:
            self.dm = dm
            self.train_loader_x = self.train_loader_u = None
            self.val_loader = self.test_loader = None
            self.num_classes = dm.num_classes
            self.num_source_domains = dm.num_source_domains
            self.lab2cname = dm.lab2cname
            if extra is not None:
                extra(self)

    Harness.__name__ = trainer_cls.__name__
    return Harness(cfg)


def trainable_spec(module: torch.nn.Module, prefix: str = "") -> list[list]:
    """``[name, shape]`` of every parameter the official trainer trains, in its order."""
    return [[prefix + n, list(p.shape)] for n, p in module.named_parameters() if p.requires_grad]


def round_trip_checkpoint(trainer, values: dict[str, torch.Tensor], poison: Iterable[str],
                          epoch: int = 1) -> None:
    """Write ``values`` into the registered models, save them with the official
    ``save_model`` (the buffers named in ``poison`` hold 7.0 in the file, to show that
    ``load_model`` drops them) and read them back with the official ``load_model``.

    The schedulers are detached before saving: their pickled objects would make the files
    unreadable with ``weights_only=True``, and ``load_model`` ignores them.
    """
    trainer._scheds = {name: None for name in trainer._scheds}
    kept = {}
    with torch.no_grad():
        for name in trainer.get_model_names():
            model = trainer._models[name]
            state = dict(model.named_parameters()) | dict(model.named_buffers())
            for key, value in values.items():
                if key in state:
                    state[key].copy_(value)
            for key in poison:
                if key in state:
                    kept[(name, key)] = state[key].clone()
                    state[key].fill_(7.0)
    with tempfile.TemporaryDirectory() as directory:
        trainer.save_model(epoch - 1, directory)
        with torch.no_grad():
            for name in trainer.get_model_names():
                state = dict(trainer._models[name].named_parameters())
                state |= dict(trainer._models[name].named_buffers())
                for (model_name, key), value in kept.items():
                    if model_name == name:
                        state[key].copy_(value)
                for key in values:
                    if key in state:
                        state[key].zero_()
        trainer.load_model(directory, epoch=epoch)
    for name in trainer.get_model_names():
        state = dict(trainer._models[name].named_parameters())
        state |= dict(trainer._models[name].named_buffers())
        for key, value in values.items():
            if key in state and not torch.equal(state[key].detach(), value):
                raise RuntimeError(f"{key} did not survive the official save/load round trip")
        for (model_name, key), value in kept.items():
            if model_name == name and not torch.equal(state[key], value):
                raise RuntimeError(f"the official load_model did not drop {key}")


class StepRecorder:
    """Replaces ``optimizer.step`` of the official trainer: records the gradients the step
    would apply and leaves the parameters unchanged."""

    def __init__(self, trainer, named: dict[str, torch.nn.Parameter]) -> None:
        self.named = named
        self.grads: dict[str, torch.Tensor] | None = None
        for optim in trainer._optims.values():
            optim.step = self.record

    def record(self, *args, **kwargs) -> None:
        self.grads = {n: (p.grad.detach().clone() if p.grad is not None else None)
                      for n, p in self.named.items()}


class GradTaps:
    """Every gradient autograd delivers to each named leaf, in order (one per backward)."""

    def __init__(self, named: dict[str, torch.nn.Parameter]) -> None:
        self.seen: dict[str, list[torch.Tensor]] = {n: [] for n in named}
        for n, p in named.items():
            p.register_hook(lambda g, n=n: self.seen[n].append(g.detach().clone()))


def capture_outputs(module: torch.nn.Module, store: list) -> torch.utils.hooks.RemovableHandle:
    return module.register_forward_hook(lambda _m, _i, out: store.append(out))


def summary(t: torch.Tensor, samples: int = 256) -> dict:
    """Norm, sum and an evenly strided sample of a tensor too large to store whole."""
    flat = t.detach().flatten().double()
    step = max(1, flat.numel() // samples)
    return {"norm": flat.norm().item(), "sum": flat.sum().item(), "step": step,
            "sample": t.detach().flatten()[::step][:samples].clone()}


def split_small(tensors: dict[str, torch.Tensor | None], limit: int = 16384) -> tuple[dict, dict]:
    """(tensors kept whole, summaries of the large ones); ``None`` entries are skipped."""
    whole, summaries = {}, {}
    for name, t in tensors.items():
        if t is None:
            continue
        if t.numel() <= limit:
            whole[name] = t.detach().clone()
        else:
            summaries[name] = summary(t)
    return whole, summaries


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.detach() - b.detach()).abs().max().item()


def write_fixture(out_dir: Path, name: str, spec: dict, expected: dict) -> None:
    """``<name>.json`` (the setting and scalar results) and ``<name>_expected.pt`` (tensors)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(spec, indent=1) + "\n")
    path = out_dir / f"{name}_expected.pt"
    torch.save(expected, path)
    size = path.stat().st_size
    if size > MAX_FIXTURE_BYTES:
        raise RuntimeError(f"{path} is {size} bytes; keep fixtures under {MAX_FIXTURE_BYTES}")
    torch.load(path, weights_only=True)  # what the tests will do
    LOG.info("wrote %s (%d bytes)", path, size)


def torch_version() -> str:
    return torch.__version__


def named_trainables(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def official_eval(trainer, images: torch.Tensor, taps: dict[str, torch.nn.Module],
                  **kwargs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits of the official ``model_inference`` in eval mode, and the last output of each
    tapped module during that call."""
    stores: dict[str, list] = {name: [] for name in taps}
    handles = [capture_outputs(module, stores[name]) for name, module in taps.items()]
    trainer.set_model_mode("eval")
    with torch.no_grad():
        logits = trainer.model_inference(images, **kwargs)
    for handle in handles:
        handle.remove()
    return logits.detach().clone(), {name: _detach(store[-1]) for name, store in stores.items()}


def official_train_step(trainer, batch: dict, named: dict[str, torch.nn.Parameter],
                        taps: dict[str, torch.nn.Module] | None = None) -> dict:
    """One official ``forward_backward`` in train mode with the optimizer step recorded instead
    of taken: its loss summary, the gradients the step would apply, every gradient autograd
    delivered to each trainable (one per backward pass), and the tapped modules' outputs."""
    stores: dict[str, list] = {name: [] for name in taps or {}}
    handles = [capture_outputs(module, stores[name]) for name, module in (taps or {}).items()]
    trainer.set_model_mode("train")
    recorder = StepRecorder(trainer, named)
    grad_taps = GradTaps(named)
    trainer.batch_idx, trainer.num_batches = 0, 2  # not the last batch: no scheduler step
    summary = trainer.forward_backward(batch)
    for handle in handles:
        handle.remove()
    if recorder.grads is None:
        raise RuntimeError("the official forward_backward took no optimizer step")
    return {"summary": summary, "grads": recorder.grads, "raw_grads": grad_taps.seen,
            "outputs": {name: _detach(store[-1]) for name, store in stores.items() if store}}


def _detach(value):
    if isinstance(value, tuple | list):
        return type(value)(_detach(v) for v in value)
    return value.detach().clone() if torch.is_tensor(value) else value


def zeroed_logits(trainer, module: torch.nn.Module, images: torch.Tensor, **kwargs):
    """Logits with every trainable of ``module`` set to zero (then restored)."""
    saved = {n: p.detach().clone() for n, p in named_trainables(module).items()}
    with torch.no_grad():
        for p in named_trainables(module).values():
            p.zero_()
        logits, _ = official_eval(trainer, images, {}, **kwargs)
        for n, p in named_trainables(module).items():
            p.copy_(saved[n])
    return logits


def decode_prompts(tokenized: torch.Tensor) -> list[str]:
    """The official tokenizer's reading of each tokenised prompt, SOS and EOT excluded."""
    tokenizer = importlib.import_module("clip.simple_tokenizer").SimpleTokenizer()
    eot = tokenized.argmax(dim=-1)
    return [tokenizer.decode(row[1:end].tolist()).strip()
            for row, end in zip(tokenized, eot, strict=True)]


def command_line(doc: str, dassl: bool, variants: list[str] | None = None) -> argparse.Namespace:
    """The generators' shared options: ``--official`` (work tree), ``--dassl`` (for the
    repositories that run on upstream Dassl), ``--out`` and the commits to record."""
    parser = argparse.ArgumentParser(description=doc.strip().split("\n")[0])
    parser.add_argument("--official", type=Path, required=True,
                        help="work tree of the official repository (its root folder)")
    if dassl:
        parser.add_argument("--dassl", type=Path, required=True,
                            help="work tree of KaiyangZhou/Dassl.pytorch")
        parser.add_argument("--dassl-commit", default="", help="recorded in the JSON")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--official-commit", default="", help="recorded in the JSON")
    if variants:
        parser.add_argument("--variants", nargs="+", default=variants, choices=variants)
    args = parser.parse_args()
    setup_logging()
    torch.set_num_threads(2)
    return args


def provenance(repository: str, args: argparse.Namespace) -> dict:
    """Where the recorded numbers come from (leading keys of every JSON)."""
    out = {"official_repository": repository,
           "official_repository_commit": args.official_commit}
    if hasattr(args, "dassl_commit"):
        out["dassl_commit"] = args.dassl_commit
    return out | {"torch": torch_version()}


def run_description(source: str) -> str:
    return (f"official code ({source}) in fp32 on CPU; trainables written with the official "
            "save_model and read with the official load_model; loss from the official "
            "forward_backward in train mode before any optimizer step (gradients as the "
            "optimizer would receive them); logits from the official model_inference in eval "
            "mode")


def bundled_trainer(root: Path, method_dir: str, trainer_module: str, trainer_name: str,
                    config_file: str, dataset: str, opts: list[str],
                    classnames: list[str]) -> SimpleNamespace:
    """The official trainer of a repository that bundles ``Dassl.ProGrad.pytorch`` next to its
    method folder (KgCoOp, Prompt-align), configured by its ``train.setup_cfg`` and built on the
    recipe's CLIP, with the recipe's trainable values written and read back through the official
    checkpoint functions. Returns the pieces the generators need as attributes."""
    recipe = load_recipe()
    state = recipe.clip_state_dict()
    code = root.resolve() / method_dir
    use_official(code, root.resolve() / "Dassl.ProGrad.pytorch")
    train = load_train_module(code)
    module = importlib.import_module(trainer_module)  # the official packages, not ours
    official_clip = importlib.import_module("clip.clip")
    module.load_clip_to_cpu = clip_loader(official_clip, state)
    cfg = official_cfg(train, opts, trainer=trainer_name, config_file=str(code / config_file),
                       dataset_config_file=str(code / f"configs/datasets/{dataset}.yaml"))
    trainer = build_trainer(getattr(module, trainer_name), cfg, fake_data_manager(classnames))
    named = named_trainables(trainer.model)
    spec = [[n, list(p.shape)] for n, p in named.items()]
    values = recipe.trainable_tensors(spec)
    round_trip_checkpoint(trainer, {k.removeprefix("prompt_learner."): v
                                    for k, v in values.items()},
                          poison=["token_prefix", "token_suffix"])
    return SimpleNamespace(recipe=recipe, state=state, module=module, clip=official_clip,
                           cfg=cfg, trainer=trainer, named=named, spec=spec, values=values)


def run_variants(doc: str, variants: Iterable[str], run_variant: Callable,
                 stubs: dict[str, dict]) -> None:
    """The main of a generator of several fixtures from one official repository on upstream
    Dassl: ``run_variant(args, train, name)`` for each variant asked for on the command line
    (``train``: the official ``train.py`` as a module)."""
    args = command_line(doc, dassl=True, variants=list(variants))
    use_official(args.official.resolve(), args.dassl.resolve(), stubs)
    train = load_train_module(args.official.resolve())
    for name in args.variants:
        run_variant(args, train, name)
