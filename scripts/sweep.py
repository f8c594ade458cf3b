r"""Run a whole protocol (methods x datasets x seeds): one job per GPU here, or on Slurm.

Examples::

    export DATA=/path/to/datasets
    python scripts/sweep.py base2new --methods coop cocoop maple promptsrc --seeds 1 2 3
    python scripts/sweep.py xd dg --methods maple --gpus 0,1,2,3
    python scripts/sweep.py few_shot --methods promptsrc --shots 1 2 4 8 16 --datasets dtd eurosat
    python scripts/sweep.py base2new --methods maple --launcher slurm --partition gpu \
        --time 4:00:00 --mem 32G --cpus-per-task 8
    python scripts/sweep.py base2new --methods maple --status
    python scripts/sweep.py few_shot --methods CoOp/demo_tiny --datasets demo --shots 2 \
        --seeds 1 -- OPTIM.MAX_EPOCH 1
    python scripts/sweep.py mvlpt elevater --methods mcoop mvpt mupt --shots 5
    python scripts/sweep.py --jobs jobs.jsonl      # any commands, one JSON object a line

MVLPT (protocols mvlpt and elevater; methods mcoop, mvpt, mupt, mcocoop): per shot count, a
source run on CoOp's 11 datasets per seed, their average once all have ended, then every
target (mvlpt: CoOp's datasets; elevater: ELEVATER's 20 tasks) fine-tuned from the average.
A method is an alias of the table METHODS or ``Trainer/cfg`` (any trainer and any config
of configs/trainers/<Trainer>/, so a new method needs no code here). Jobs are the scripts of
scripts/protocols/. A job whose log already holds a final accuracy is skipped; an unfinished
one is run again in its folder, where train.py resumes from the last checkpoint; a job that is
running (started by another sweep, or queued in Slurm) is never started a second time. Jobs
that depend on a training (evaluations) wait for it. Words after ``--`` are KEY VALUE
overrides passed to train.py (EXTRA_OPTS).

Launchers (--launcher):
  local           (default) here, each job with its own CUDA_VISIBLE_DEVICES taken from --gpus
                  (default: the CUDA_VISIBLE_DEVICES of the sweep); with no GPU one after
                  another. The jobs stop with the sweep; at the end the failed jobs are listed
                  with their logs and the exit status is 1.
  slurm           submits through submitit: one job array per stage, evaluations depending on
                  their training, requeue (and resume) on preemption and at the time limit,
                  --nodes N runs each training over N nodes with torchrun. The sweep returns
                  once submitted (--wait: once every job ended); run it again to submit what
                  is missing or failed.
  submitit-local  the path of slurm through submitit's local executor, on this machine.
--status lists every job (done, running, pending, failed, todo) with its Slurm or process id
and its log, from the run folders and what Slurm reports.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts import layout, slurm  # noqa: E402
from scripts.elevater_results import parse_blocks  # noqa: E402
from scripts.jobs import Job, Records, job_status  # noqa: E402
from scripts.local_launcher import (  # noqa: E402
    Interrupted,
    Sweep,
    parse_gpus,
    report,
)
from scripts.logparse import TEST_END, TRAIN_END, log_files  # noqa: E402
from scripts.zoo import sweep_jobs  # noqa: E402

SCRIPTS = Path(__file__).resolve().parent
PROTOCOLS = ("base2new", "xd", "dg", "few_shot", "mvlpt", "elevater")


@dataclass(frozen=True)
class Method:
    """A trainer and the config each protocol uses (None: the protocol does not apply)."""

    trainer: str
    base2new: str | None
    xd: str | None
    few_shot: str | None
    config_dir: str | None = None  # folder of configs/trainers/ when not the trainer's
    mvlpt: tuple[str, str, int] | None = None  # MVLPT: (variant, cfg, prompt tokens)

    @property
    def zero_shot(self) -> bool:
        return self.trainer.startswith("ZeroshotCLIP")


METHODS = {
    "zsclip": Method("ZeroshotCLIP", "vit_b16", "vit_b16", None, "CoOp"),
    "coop": Method("CoOp", "vit_b16_ep50_ctxv1", "vit_b16_ep50", "vit_b16_ep50"),
    "cocoop": Method("CoCoOp", *["vit_b16_c4_ep10_batch1_ctxv1"] * 3),
    "vpt": Method("VPT", *["vit_b16_c2_ep5_batch4_4"] * 3),
    "lp": Method("IVLP", *["vit_b16_c2_ep5_batch4_4ctx_language_only"] * 3),
    "ivlp": Method("IVLP", *["vit_b16_c2_ep5_batch4_2+2ctx"] * 3),
    "maple": Method("MaPLe", "vit_b16_c2_ep5_batch4_2ctx",
                    "vit_b16_c2_ep5_batch4_2ctx_cross_datasets", "vit_b16_c2_ep5_batch4_2ctx"),
    "promptsrc": Method("PromptSRC", "vit_b16_c2_ep20_batch4_4+4ctx",
                        "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets",
                        "vit_b16_c2_ep50_batch4_4+4ctx_few_shot"),
    "kgcoop": Method("KgCoOp", "vit_b16_ep100_ctxv1_w8", None, "vit_b16_ep100_ctxv1_w8"),
    "coprompt": Method("CoPrompt", "coprompt", None, None),
    # ProGrad's base-to-novel runs use 4 shots (scripts/prograd/): its few-shot setting here
    "prograd": Method("ProGrad", None, None, "rn50_ep50"),
    "coop_dept": Method("ExtrasLinearProbeCoOp", *["vit_b16_ep10_bs4_lr35"] * 2, None),
    "cocoop_dept": Method("ExtrasLinearProbeCoCoOp", *["vit_b16_c4_ep10_batch1_ctxv1"] * 2, None),
    "kgcoop_dept": Method("ExtrasLinearProbeKgCoOp", *["vit_b16_ep10_ctxv1_bs4_lr35"] * 2, None),
    "maple_dept": Method("ExtrasLinearProbeMaPLe", *["vit_b16_c2_ep10_batch4_2ctx"] * 2, None),
    # TCP: the official train.py's 25 epochs on ImageNet and SUN397 come with scripts/tcp/ only
    "tcp": Method("TCP", "vit_b16_ep100_ctxv1", None, None),
    "mma": Method("MultiModalAdapter", "vit_b16_ep5", "vit_b16_ep5_imnet", None),
    "clip_lora": Method("CLIPLoRA", None, None, "vit_b16"),
    # MVLPT (protocols mvlpt and elevater): the official scripts' TRAINER argument and M
    "mcoop": Method("MVLPT", None, None, None, mvlpt=("CoOp", "vit_b16", 16)),
    "mvpt": Method("MVLPT", None, None, None, mvlpt=("VPT", "vit_b16", 16)),
    "mupt": Method("MVLPT", None, None, None, mvlpt=("UPT", "vit_b16", 4)),
    "mcocoop": Method("MVLPT", None, None, None, mvlpt=("COCOOP", "vit_b16", 4)),
}


def resolve_method(spec: str) -> Method:
    """An alias of METHODS (any case), ``Trainer/cfg`` or ``zoo:NAME`` (a released model)."""
    zoo = sweep_jobs.resolve(spec)
    if zoo is not None:
        return zoo
    if spec.lower() in METHODS:
        return METHODS[spec.lower()]
    if "/" in spec:
        trainer, cfg = spec.split("/", 1)
        config_dir = "CoOp" if trainer.startswith("ZeroshotCLIP") else None
        return Method(trainer, cfg, cfg, cfg, config_dir)
    raise SystemExit(f"error: unknown method '{spec}'. Use one of {', '.join(METHODS)} "
                     "or Trainer/cfg (a config of configs/trainers/<Trainer>/).")


# ---------------------------------------------------------------- the jobs of a protocol


def dataset_epoch(m: Method, dataset: str, opts: list[str]) -> dict[str, str]:
    """``{"LOADEP": epoch}`` for the test job where the trainer's own per-dataset settings
    change the number of epochs whatever the config says (CoPrompt's, as its official
    train.py: 5 on Food101), so the test loads the checkpoint the training left; empty when
    LOADEP is set already or TRAINER.CoPrompt.DATASET_SETTINGS is off."""
    if m.trainer != "CoPrompt" or os.environ.get("LOADEP"):
        return {}
    words = shlex.split(os.environ.get("EXTRA_OPTS", "")) + list(opts)
    settings = dict(zip(words[::2], words[1::2], strict=False))
    if settings.get("TRAINER.CoPrompt.DATASET_SETTINGS", "True").lower() in ("false", "0"):
        return {}
    from trainers.coprompt import DATASET_SETTINGS

    config = SCRIPTS.parent / "configs" / "datasets" / f"{dataset}.yaml"
    name = dataset_name(config) if config.is_file() else dataset
    values = DATASET_SETTINGS.get(name, ())
    return {"LOADEP": str(values[3])} if len(values) > 3 else {}


def dataset_name(config: Path) -> str:
    """DATASET.NAME of a dataset config file."""
    import yaml

    return yaml.safe_load(config.read_text(encoding="utf-8"))["DATASET"]["NAME"]


class JobBuilder:
    """Builds the jobs of the protocols over an output root, with common settings."""

    def __init__(self, output: Path, opts: list[str]):
        self.output = output
        self.opts = opts

    def _job(self, name: str, script: str | Path, args: list, run_dir: Path | None,
             end: str | None, method: Method, after: tuple[str, ...] = (),
             stage: str | None = None, **env: str) -> Job:
        """A job running ``script`` (a name of scripts/protocols/, or a path)."""
        extra = " ".join(filter(None, [os.environ.get("EXTRA_OPTS"), shlex.join(self.opts)]))
        env = {"OUTPUT": str(self.output), "EXTRA_OPTS": extra, **env}
        if method.config_dir:
            env["CFG_TRAINER"] = method.config_dir
        path = script if isinstance(script, Path) else SCRIPTS / "protocols" / script
        command = ["bash", str(path), *map(str, args)]
        if stage is None:  # one Slurm array per step and method
            stage = name.split(f"/{method.trainer}/")[0] + f"/{method.trainer}"
        return Job(name, command, run_dir, end, after, env, stage)

    def base2new(self, m: Method, datasets: list[str], seeds: list[int]) -> list[Job]:
        jobs, cfg = [], m.base2new
        for d in datasets:
            for s in seeds[:1] if m.zero_shot else seeds:
                where = (d, 16, m.trainer, cfg, s)
                key = f"{m.trainer}/{cfg}/{d}/seed{s}"
                if m.zero_shot:
                    for sub in ("base", "new"):
                        run = layout.base2new_dir(self.output, f"test_{sub}", *where)
                        jobs.append(self._job(f"base2new/test_{sub}/{key}", "base2new_test.sh",
                                              [m.trainer, cfg, d, s, sub], run, TEST_END, m,
                                              MODEL_DIR="none"))
                    continue
                train = f"base2new/train_base/{key}"
                jobs.append(self._job(train, "base2new_train.sh", [m.trainer, cfg, d, s],
                                      layout.base2new_dir(self.output, "train_base", *where),
                                      TRAIN_END, m))
                jobs.append(self._job(f"base2new/test_new/{key}", "base2new_test.sh",
                                      [m.trainer, cfg, d, s, "new"],
                                      layout.base2new_dir(self.output, "test_new", *where),
                                      TEST_END, m, after=(train,),
                                      **dataset_epoch(m, d, self.opts)))
        return jobs

    def transfer(self, m: Method, targets: list[str], seeds: list[int], source: str) -> list[Job]:
        """Train on ``source`` (all classes, 16 shots), evaluate on each target."""
        jobs, cfg = [], m.xd
        env = {"SOURCE": source, **({"MODEL_DIR": "none"} if m.zero_shot else {})}
        evaluated = [source, *targets] if m.zero_shot else targets  # CLIP: the source as well
        for s in seeds[:1] if m.zero_shot else seeds:
            after: tuple[str, ...] = ()
            if not m.zero_shot:
                train = f"xd/train/{m.trainer}/{cfg}/{source}/seed{s}"
                jobs.append(self._job(train, "xd_train.sh", [m.trainer, cfg, source, s],
                                      layout.train_dir(self.output, source, m.trainer, cfg, 16, s),
                                      TRAIN_END, m))
                after = (train,)
            for d in evaluated:
                run = layout.evaluation_dir(self.output, m.trainer, cfg, 16, d, s)
                jobs.append(self._job(f"xd/test/{m.trainer}/{cfg}/{d}/seed{s}", "xd_test.sh",
                                      [m.trainer, cfg, d, s], run, TEST_END, m, after, **env))
        return jobs

    def few_shot(self, m: Method, datasets: list[str], shots: list[int],
                 seeds: list[int]) -> list[Job]:
        jobs, cfg = [], m.few_shot
        for d in datasets:
            for k in shots:
                for s in seeds:
                    run = layout.train_dir(self.output, d, m.trainer, cfg, k, s)
                    jobs.append(self._job(f"few_shot/{m.trainer}/{cfg}/{d}/{k}shots/seed{s}",
                                          "few_shot.sh", [m.trainer, cfg, d, k, s], run,
                                          TRAIN_END, m))
        return jobs


    def mvlpt_source(self, m: Method, shots: list[int], seeds: list[int]
                     ) -> tuple[list[Job], dict[int, str]]:
        """MVLPT's source: the 11 CoOp datasets jointly, one run per seed, then their average;
        returns the jobs and the name of the average job of each shot count (what the targets
        wait for)."""
        variant, cfg, nctx = m.mvlpt
        tasks = ",".join(layout.MVLPT_SOURCE_TASKS)
        jobs, averages = [], {}
        for k in shots:
            key = f"{variant}/{cfg}/nctx{nctx}/{k}shots"
            runs = []
            for s in seeds:
                name = f"mvlpt/source/{key}/seed{s}"
                jobs.append(self._job(
                    name, "multitask.sh", [variant, cfg, nctx, k, s],
                    layout.mvlpt_dir(self.output, tasks, variant, cfg, nctx, k, s), TRAIN_END,
                    m, stage=f"mvlpt/source/{variant}", TASKS=tasks))
                runs.append(name)
            averages[k] = f"mvlpt/average/{key}"
            jobs.append(self._job(  # no log: its exit status says it is done
                averages[k], "multitask_average.sh", [variant, cfg, nctx, k], None, None, m,
                tuple(runs), stage=f"mvlpt/average/{variant}", TASKS=tasks,
                SEEDS=" ".join(map(str, seeds))))
        return jobs, averages

    def mvlpt_targets(self, m: Method, targets: list[str], shots: list[int],
                      seeds: list[int], elevater: bool) -> list[Job]:
        """Each target (a CoOp dataset, or an ELEVATER task) fine-tuned from the source
        prompts averaged over the seeds, for every shot count and seed."""
        jobs, averages = self.mvlpt_source(m, shots, seeds)
        variant, cfg, nctx = m.mvlpt
        tasks = ",".join(layout.MVLPT_SOURCE_TASKS)
        protocol = "elevater" if elevater else "mvlpt"
        for k in shots:
            source = layout.mvlpt_dir(self.output, tasks, variant, cfg, nctx, k)
            for d in targets:
                for s in seeds:
                    run = layout.mvlpt_dir(self.output, d, variant, cfg, nctx, k, s)
                    name = f"{protocol}/target/{variant}/{cfg}/nctx{nctx}/{k}shots/{d}/seed{s}"
                    if elevater:
                        job = self._job(name, SCRIPTS / "mvlpt" / "main_single_elevater_cut.sh",
                                        [variant, cfg, nctx, k, s, d], run, None, m,
                                        (averages[k],), stage=f"elevater/target/{variant}",
                                        MODEL_DIR=str(source))
                        job = ElevaterJob(**vars(job))
                    else:
                        job = self._job(name, "transfer.sh", [variant, cfg, nctx, k, s, d], run,
                                        TRAIN_END, m, (averages[k],),
                                        stage=f"mvlpt/target/{variant}", TASKS=tasks,
                                        MODEL_DIR=str(source))
                    jobs.append(job)
        return jobs


@dataclass
class ElevaterJob(Job):
    """An ELEVATER run: finished when its log holds the ELEVATER result blocks after training
    (a task's metric may be mean-per-class accuracy or 11-point mAP, not ``* accuracy``)."""

    def finished(self) -> bool:
        return self.run_dir is not None and any(
            parse_blocks(path) for path in log_files(self.run_dir)) and self.same_start()


def protocol_jobs(protocols: list[str], methods: list[Method], datasets: list[str] | None,
                  seeds: list[int], shots: list[int], output: Path, opts: list[str],
                  source: str = "imagenet") -> list[Job]:
    """The jobs of the given protocols; a job shared by two protocols appears once."""
    builder = JobBuilder(output, opts)
    jobs: dict[str, Job] = {}
    for protocol in protocols:
        for m in methods:
            if isinstance(m, sweep_jobs.ZooMethod):  # a released model: its official evaluations
                new = m.jobs(protocol, datasets, seeds, output, opts, shots)
                if not new:
                    print(f"note: {m.trainer} has no {protocol} evaluation; skipped", flush=True)
                    continue
            elif protocol == "base2new" and m.base2new:
                new = builder.base2new(m, datasets or list(layout.BASE2NEW_DATASETS), seeds)
            elif protocol == "xd" and m.xd:
                new = builder.transfer(m, datasets or list(layout.XD_TARGETS), seeds, source)
            elif protocol == "dg" and m.xd:
                new = builder.transfer(m, datasets or list(layout.DG_TARGETS), seeds, source)
            elif protocol == "few_shot" and m.few_shot and not m.zero_shot:
                new = builder.few_shot(m, datasets or list(layout.BASE2NEW_DATASETS),
                                       shots or list(layout.FEW_SHOTS), seeds)
            elif protocol in ("mvlpt", "elevater") and m.mvlpt:
                default = layout.ELEVATER_TASKS if protocol == "elevater" else layout.MVLPT_TARGETS
                new = builder.mvlpt_targets(m, datasets or list(default),
                                            shots or list(layout.MVLPT_SHOTS), seeds,
                                            elevater=protocol == "elevater")
            else:
                print(f"note: {protocol} does not apply to {m.trainer}; skipped", flush=True)
                continue
            jobs.update((job.name, job) for job in new)
    return list(jobs.values())


def load_jobs_file(path: Path) -> list[Job]:
    """Jobs from a JSON-lines file: {"name", "command", "run_dir", "end_signal", "after", "env",
    "stage"}.

    ``end_signal`` is "train", "test", a literal line, or null (any accuracy line counts).
    ``stage`` (default "jobs") groups jobs into Slurm arrays.
    """
    signals: dict = {"train": TRAIN_END, "test": TEST_END}
    jobs = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            spec = json.loads(line)
            run_dir = spec.get("run_dir")
            jobs.append(Job(
                name=spec["name"], command=spec["command"],
                run_dir=Path(run_dir) if run_dir else None,
                end_signal=signals.get(spec.get("end_signal"), spec.get("end_signal")),
                after=tuple(spec.get("after", ())), env=dict(spec.get("env", {})),
                stage=str(spec.get("stage", "jobs"))))
        except (ValueError, KeyError, TypeError) as err:
            raise SystemExit(f"error: {path}:{number}: not a job ({err}); expected a JSON object "
                             'with at least "name" and "command"') from err
    return jobs


# ---------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("protocols", nargs="*", metavar="PROTOCOL",
                        help=f"one or more of {', '.join(PROTOCOLS)}")
    parser.add_argument("--methods", nargs="+", default=[],
                        help=f"aliases ({', '.join(METHODS)}), Trainer/cfg, or zoo:NAME "
                             "(a released model: python -m scripts.zoo list)")
    parser.add_argument("--datasets", nargs="+", default=None,
                        help="datasets (default: the papers' list of each protocol)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--shots", nargs="+", type=int, default=None,
                        help="images per class (default: few_shot 1 2 4 8 16; mvlpt and "
                             "elevater 1 5 20)")
    parser.add_argument("--source", default="imagenet", help="xd/dg: the training dataset")
    parser.add_argument("--output", type=Path, default=Path("output"), help="output root")
    parser.add_argument("--jobs", type=Path, default=None, help="JSON-lines file of jobs")
    parser.add_argument("--log-dir", type=Path, default=None,
                        help="each job's output and state (default: OUTPUT/sweep_logs)")
    parser.add_argument("--feature-cache", type=Path, default=None, metavar="DIR",
                        help="the frozen image features shared by the jobs (train.py "
                             "--feature-cache; default: OUTPUT/feature_cache)")
    parser.add_argument("--no-feature-cache", action="store_true",
                        help="every job computes its image features itself")
    parser.add_argument("--dry-run", action="store_true",
                        help="list the jobs (and with --launcher slurm what would be "
                             "submitted) and exit")
    parser.add_argument("--status", action="store_true",
                        help="list every job with its state, Slurm or process id and log")
    parser.add_argument("--launcher", choices=("local", "slurm", "submitit-local"),
                        default="local", help="where the jobs run (default: local)")
    parser.add_argument("--gpus", default=None,
                        help="local launchers: comma-separated GPU ids, one job each; repeat "
                             "an id for two jobs on that GPU (default: CUDA_VISIBLE_DEVICES; "
                             "none: one job at a time)")
    add_slurm_arguments(parser)
    parser.epilog = (parser.epilog or "") + "\nAfter --: KEY VALUE overrides for train.py."
    return parser


def add_slurm_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "slurm", "resources of each job (flags override --slurm-config)")
    group.add_argument("--slurm-config", type=Path, default=None,
                       help="YAML file with any of: " + ", ".join(slurm.RESOURCE_KEYS))
    group.add_argument("--partition")
    group.add_argument("--account")
    group.add_argument("--qos")
    group.add_argument("--gpus-per-node", type=int, help="GPUs of each job on each node "
                       "(default: 1 where the partition has GPUs, else 0; several: "
                       "train.py runs under torchrun, one process each)")
    group.add_argument("--cpus-per-task", type=int, help="CPUs of each job on each node")
    group.add_argument("--mem", help="memory of each job on each node, e.g. 64G")
    group.add_argument("--time", help="time limit of each run (MINUTES or HH:MM:SS; default "
                       "24:00:00); a job reaching it is requeued and resumes")
    group.add_argument("--nodes", type=int,
                       help="nodes of each job: one training over N nodes with torchrun")
    group.add_argument("--max-running", type=int, help="tasks of one array running at once")
    group.add_argument("--sbatch", action="append", default=[], metavar="KEY=VALUE",
                       help="any other sbatch option, e.g. --sbatch constraint=a100 (repeat)")
    group.add_argument("--wait", action="store_true",
                       help="stay until every submitted job ended or will never start "
                       "(pending for a reason Slurm never resolves); exit 1 if one failed")
    group.add_argument("--poll", type=seconds, default=60.0, metavar="SECONDS",
                       help="how often --wait asks Slurm, and a sweep waiting for another "
                            "sweep's submission looks again (default: 60)")


def seconds(text: str) -> float:
    """A positive number of seconds, for argparse."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 1e6:
        raise argparse.ArgumentTypeError(
            f"give a positive number of seconds, e.g. 10 (not {text!r})")
    return value


def slurm_resources(args: argparse.Namespace) -> slurm.Resources:
    sbatch = {}
    for item in args.sbatch:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: --sbatch {item!r}: write KEY=VALUE, e.g. "
                             "--sbatch constraint=a100")
        sbatch[key.lstrip("-")] = value
    flags = {key: getattr(args, key) for key in ("partition", "account", "qos", "gpus_per_node",
                                                 "cpus_per_task", "mem", "time", "nodes",
                                                 "max_running")}
    resources = slurm.load_resources(args.slurm_config, flags)
    resources.sbatch.update(sbatch)
    return resources


def build_jobs(args: argparse.Namespace, opts: list[str]) -> list[Job]:
    if args.jobs is not None:
        return load_jobs_file(args.jobs)
    if not args.protocols or not args.methods:
        raise SystemExit("error: give one or more protocols and --methods "
                         "(or --jobs FILE); see --help")
    if not (args.dry_run or args.status) and not os.environ.get("DATA"):
        raise SystemExit("error: DATA is not set; export DATA=/path/to/datasets")
    methods = [resolve_method(spec) for spec in args.methods]
    return protocol_jobs(args.protocols, methods, args.datasets, args.seeds, args.shots,
                         args.output, opts, args.source)


def with_feature_cache(args: argparse.Namespace, opts: list[str]) -> list[str]:
    """The overrides with FEATURE_CACHE.DIR (an absolute path, for jobs started elsewhere),
    unless switched off or given among them."""
    if args.no_feature_cache or "FEATURE_CACHE.DIR" in opts[::2]:
        return opts
    folder = args.feature_cache or args.output / "feature_cache"
    return [*opts, "FEATURE_CACHE.DIR", str(folder.resolve())]


def dry_run(jobs: list[Job], args: argparse.Namespace, log_dir: Path) -> None:
    records, queue = Records(log_dir), slurm.SlurmQueue()
    for job in jobs:
        state = job_status(job, records.get(job.name), queue, records.claimed(job.name)).state
        command = job.command if isinstance(job.command, str) else shlex.join(job.command)
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in job.env.items() if v)
        print(f"{state}  {job.name}\n      {env} {command}".rstrip())
    if args.launcher == "slurm":
        print("\nWould submit (<n>: the id Slurm gives):")
        submitter = slurm.DryRunSubmitter(slurm_resources(args))
        launcher = slurm.SubmititLauncher(jobs, log_dir, submitter, queue)
        launcher.run(wait=False)


def launch(jobs: list[Job], args: argparse.Namespace, log_dir: Path, argv: list[str]) -> int:
    queue = slurm.SlurmQueue()
    if args.launcher == "local":
        failures = Sweep(jobs, parse_gpus(args.gpus), log_dir, scheduler=queue).run()
    elif args.launcher == "slurm":
        submitter = slurm.SlurmSubmitter(log_dir / "submitit", slurm_resources(args))
        failures = slurm.SubmititLauncher(jobs, log_dir, submitter, queue,
                                            poll=args.poll).run(args.wait)
        if not args.wait:
            status = [a for a in argv if a not in ("--wait",)] + ["--status"]
            print(f"Follow them with: python scripts/sweep.py {shlex.join(status)}")
            return 0
    else:
        submitter = slurm.LocalSubmitter(log_dir / "submitit", slurm_resources(args),
                                         parse_gpus(args.gpus) or [None])
        failures = slurm.SubmititLauncher(jobs, log_dir, submitter, queue, poll=0.1).run(True)
    report(failures)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    args, opts = build_parser().parse_args(argv[:cut]), argv[cut + 1:]
    unknown = [p for p in args.protocols if p not in PROTOCOLS]
    if unknown:
        raise SystemExit(f"error: unknown protocol(s) {unknown}; "
                         f"choose from {', '.join(PROTOCOLS)}")
    if len(opts) % 2:
        raise SystemExit(f"error: overrides must be KEY VALUE pairs, got {opts}")
    jobs = build_jobs(args, with_feature_cache(args, opts))
    log_dir = args.log_dir or args.output / "sweep_logs"
    if args.status:
        slurm.print_status(jobs, log_dir, slurm.SlurmQueue())
        return 0
    if args.dry_run:
        dry_run(jobs, args, log_dir)
        return 0
    try:
        return launch(jobs, args, log_dir, argv[:cut])
    except Interrupted as err:
        return 128 + int(err.args[0])
    except BrokenPipeError:  # nobody reads the progress any more: the jobs were stopped
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
