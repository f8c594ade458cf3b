"""Run a whole protocol (methods x datasets x seeds), one job per GPU.

Examples::

    export DATA=/path/to/datasets
    python scripts/sweep.py base2new --methods coop cocoop maple promptsrc --seeds 1 2 3
    python scripts/sweep.py xd dg --methods maple --gpus 0,1,2,3
    python scripts/sweep.py few_shot --methods promptsrc --shots 1 2 4 8 16 --datasets dtd eurosat
    python scripts/sweep.py base2new --methods CoOp/vit_b16_ep50 --datasets demo \
        --seeds 1 -- MODEL.BACKBONE.NAME tiny OPTIM.MAX_EPOCH 1
    python scripts/sweep.py --jobs jobs.jsonl      # any commands, one JSON object a line

A method is an alias of the table METHODS or ``Trainer/cfg`` (any trainer and any config
of configs/trainers/<Trainer>/, so a new method needs no code here). Jobs are the scripts of
scripts/protocols/; each runs with its own CUDA_VISIBLE_DEVICES taken from --gpus (default:
the CUDA_VISIBLE_DEVICES of the sweep); with no GPU the jobs run one after another. A job
whose log already holds a final accuracy is skipped; an unfinished one is run again in its
folder, where train.py resumes from the last checkpoint. Jobs that depend on a training
(evaluations) wait for it. At the end the failed jobs are listed with their logs and the exit
status is 1. Words after ``--`` are KEY VALUE overrides passed to train.py (EXTRA_OPTS).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts import layout  # noqa: E402
from scripts.logparse import TEST_END, TRAIN_END, Signal, is_finished  # noqa: E402

SCRIPTS = Path(__file__).resolve().parent
PROTOCOLS = ("base2new", "xd", "dg", "few_shot")


@dataclass(frozen=True)
class Method:
    """A trainer and the config each protocol uses (None: the protocol does not apply)."""

    trainer: str
    base2new: str | None
    xd: str | None
    few_shot: str | None
    config_dir: str | None = None  # folder of configs/trainers/ when not the trainer's

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
}


def resolve_method(spec: str) -> Method:
    """An alias of METHODS (any case) or ``Trainer/cfg``."""
    if spec.lower() in METHODS:
        return METHODS[spec.lower()]
    if "/" in spec:
        trainer, cfg = spec.split("/", 1)
        config_dir = "CoOp" if trainer.startswith("ZeroshotCLIP") else None
        return Method(trainer, cfg, cfg, cfg, config_dir)
    raise SystemExit(f"error: unknown method '{spec}'. Use one of {', '.join(METHODS)} "
                     "or Trainer/cfg (a config of configs/trainers/<Trainer>/).")


@dataclass
class Job:
    """One command; finished when a log of ``run_dir`` holds a result after ``end_signal``."""

    name: str
    command: list[str] | str  # argv, or a shell command line
    run_dir: Path | None = None
    end_signal: Signal = None
    after: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)

    def finished(self) -> bool:
        return self.run_dir is not None and is_finished(self.run_dir, self.end_signal)


# ---------------------------------------------------------------- the jobs of a protocol


class JobBuilder:
    """Builds the jobs of the protocols over an output root, with common settings."""

    def __init__(self, output: Path, opts: list[str]):
        self.output = output
        self.opts = opts

    def _job(self, name: str, script: str, args: list, run_dir: Path, end: str, method: Method,
             after: tuple[str, ...] = (), **env: str) -> Job:
        extra = " ".join(filter(None, [os.environ.get("EXTRA_OPTS"), shlex.join(self.opts)]))
        env = {"OUTPUT": str(self.output), "EXTRA_OPTS": extra, **env}
        if method.config_dir:
            env["CFG_TRAINER"] = method.config_dir
        command = ["bash", str(SCRIPTS / "protocols" / script), *map(str, args)]
        return Job(name, command, run_dir, end, after, env)

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
                                      TEST_END, m, after=(train,)))
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


def protocol_jobs(protocols: list[str], methods: list[Method], datasets: list[str] | None,
                  seeds: list[int], shots: list[int], output: Path, opts: list[str],
                  source: str = "imagenet") -> list[Job]:
    """The jobs of the given protocols; a job shared by two protocols appears once."""
    builder = JobBuilder(output, opts)
    jobs: dict[str, Job] = {}
    for protocol in protocols:
        for m in methods:
            if protocol == "base2new" and m.base2new:
                new = builder.base2new(m, datasets or list(layout.BASE2NEW_DATASETS), seeds)
            elif protocol == "xd" and m.xd:
                new = builder.transfer(m, datasets or list(layout.XD_TARGETS), seeds, source)
            elif protocol == "dg" and m.xd:
                new = builder.transfer(m, datasets or list(layout.DG_TARGETS), seeds, source)
            elif protocol == "few_shot" and m.few_shot and not m.zero_shot:
                new = builder.few_shot(m, datasets or list(layout.BASE2NEW_DATASETS), shots,
                                       seeds)
            else:
                print(f"note: {protocol} does not apply to {m.trainer}; skipped", flush=True)
                continue
            jobs.update((job.name, job) for job in new)
    return list(jobs.values())


def load_jobs_file(path: Path) -> list[Job]:
    """Jobs from a JSON-lines file: {"name", "command", "run_dir", "end_signal", "after", "env"}.

    ``end_signal`` is "train", "test", a literal line, or null (any accuracy line counts).
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
                after=tuple(spec.get("after", ())), env=dict(spec.get("env", {}))))
        except (ValueError, KeyError, TypeError) as err:
            raise SystemExit(f"error: {path}:{number}: not a job ({err}); expected a JSON object "
                             'with at least "name" and "command"') from err
    return jobs


# ---------------------------------------------------------------- the scheduler


class Interrupted(Exception):
    """SIGINT or SIGTERM reached the sweep."""


@dataclass
class Failure:
    name: str
    reason: str
    output: Path | None  # the job's stdout and stderr
    run_log: Path | None  # log.txt of its run folder


def parse_gpus(gpus: str | None) -> list[str]:
    """GPU ids from --gpus or CUDA_VISIBLE_DEVICES; empty when there is none."""
    value = gpus if gpus is not None else os.environ.get("CUDA_VISIBLE_DEVICES", "")
    ids = [g.strip() for g in value.split(",") if g.strip()]
    if any(g in ("-1", "none") for g in ids):
        return []
    return ids


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.+" else "_" for c in name)


class Sweep:
    """Runs jobs on slots (one per GPU, or one without GPU) and reports progress."""

    def __init__(self, jobs: list[Job], gpus: list[str], log_dir: Path, poll: float = 0.2):
        names = [job.name for job in jobs]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise SystemExit(f"error: duplicate job names: {sorted(duplicates)}")
        for job in jobs:
            missing = [dep for dep in job.after if dep not in names]
            if missing:
                raise SystemExit(f"error: job {job.name} waits for unknown jobs {missing}")
        self.jobs = jobs
        self.slots: list[str | None] = list(gpus) or [None]
        self.log_dir = log_dir
        self.poll = poll
        self.ok: set[str] = set()
        self.failures: dict[str, Failure] = {}
        self.running: dict[str, tuple[subprocess.Popen, int, float]] = {}  # slot index
        self.start = time.monotonic()

    def _say(self, message: str) -> None:
        total = len(self.jobs)
        ended = len(self.ok) + len(self.failures)
        print(f"[{ended}/{total} | ok {len(self.ok)} | running {len(self.running)} | failed "
              f"{len(self.failures)} | {_duration(time.monotonic() - self.start)}] {message}",
              flush=True)

    def _launch(self, job: Job, index: int) -> None:
        slot = self.slots[index]
        env = {**os.environ, **job.env}
        env.setdefault("PYTHON", sys.executable)
        if slot is not None:
            env["CUDA_VISIBLE_DEVICES"] = slot
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{_safe(job.name)}.log", "ab") as out:
            proc = subprocess.Popen(job.command, shell=isinstance(job.command, str), env=env,
                                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self.running[job.name] = (proc, index, time.monotonic())
        resume = " (resuming)" if job.run_dir is not None and job.run_dir.exists() else ""
        where = f"GPU {slot}" if slot is not None else "CPU/default device"
        self._say(f"start {job.name} on {where}{resume}")

    def _fail(self, job: Job, reason: str) -> None:
        log = self.log_dir / f"{_safe(job.name)}.log"
        run_log = job.run_dir / "log.txt" if job.run_dir is not None else None
        self.failures[job.name] = Failure(job.name, reason, log if log.exists() else None,
                                          run_log if run_log and run_log.exists() else None)

    def _reap(self) -> None:
        by_name = {job.name: job for job in self.jobs}
        for name, (proc, _slot, started) in list(self.running.items()):
            code = proc.poll()
            if code is None:
                continue
            del self.running[name]
            job, took = by_name[name], _duration(time.monotonic() - started)
            if code != 0:
                self._fail(job, f"exit status {code}")
                self._say(f"FAILED {name} (exit status {code}, {took})")
            elif job.run_dir is not None and not job.finished():
                self._fail(job, "exited 0 but its log holds no final accuracy")
                self._say(f"FAILED {name} (no result in {job.run_dir}, {took})")
            else:
                self.ok.add(name)
                self._say(f"done {name} ({took})")

    def _next(self, pending: list[Job]) -> Job | None:
        """First pending job whose dependencies succeeded; fails jobs whose dependency failed."""
        changed = True
        while changed:
            changed = False
            for job in list(pending):
                failed = [dep for dep in job.after if dep in self.failures]
                if failed:
                    pending.remove(job)
                    changed = True
                    self._fail(job, f"not run: {failed[0]} failed")
                    self._say(f"SKIPPED {job.name} ({failed[0]} failed)")
                elif all(dep in self.ok for dep in job.after):
                    pending.remove(job)
                    return job
        return None

    def _stop_all(self) -> None:
        for proc, _slot, _started in self.running.values():
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        for proc, _slot, _started in self.running.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def run(self) -> list[Failure]:
        """Run every job; returns the failures (empty when all succeeded)."""
        pending = []
        for job in self.jobs:
            if job.finished():
                self.ok.add(job.name)
            else:
                pending.append(job)
        where = ("one at a time (no GPU)" if self.slots == [None]
                 else f"GPU(s) {','.join(map(str, self.slots))}, one job each")
        self._say(f"{len(self.ok)} finished already (skipped), {len(pending)} to run, {where}")
        handler = _raise_interrupted
        old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while pending or self.running:
                busy = {index for _proc, index, _t in self.running.values()}
                free = [i for i in range(len(self.slots)) if i not in busy]
                job = self._next(pending) if free else None
                if job is not None:
                    self._launch(job, free[0])
                    continue
                if not self.running:  # what is left waits on jobs that never end
                    for job in pending:
                        self._fail(job, "not run: its dependencies form a cycle")
                    break
                time.sleep(self.poll)
                self._reap()
        except Interrupted:
            self._say(f"interrupted: stopping {len(self.running)} running job(s); run the same "
                      "command again to resume")
            self._stop_all()
            raise
        finally:
            for sig, previous in old.items():
                signal.signal(sig, previous)
        return list(self.failures.values())


def _raise_interrupted(signum: int, _frame: object) -> None:
    raise Interrupted(signum)


def report(failures: list[Failure]) -> None:
    """Print the failed jobs with the paths of their logs."""
    if not failures:
        print("All jobs finished.", flush=True)
        return
    print(f"\n{len(failures)} job(s) failed:", flush=True)
    for f in failures:
        print(f"  {f.name}: {f.reason}")
        if f.output is not None:
            print(f"      output:  {f.output}")
        if f.run_log is not None:
            print(f"      run log: {f.run_log}")
    sys.stdout.flush()


# ---------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("protocols", nargs="*", metavar="PROTOCOL",
                        help=f"one or more of {', '.join(PROTOCOLS)}")
    parser.add_argument("--methods", nargs="+", default=[],
                        help=f"aliases ({', '.join(METHODS)}) or Trainer/cfg")
    parser.add_argument("--datasets", nargs="+", default=None,
                        help="datasets (default: the papers' list of each protocol)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--shots", nargs="+", type=int, default=list(layout.FEW_SHOTS),
                        help="few-shot protocol: images per class")
    parser.add_argument("--source", default="imagenet", help="xd/dg: the training dataset")
    parser.add_argument("--output", type=Path, default=Path("output"), help="output root")
    parser.add_argument("--gpus", default=None,
                        help="comma-separated GPU ids, one job each; repeat an id for two "
                             "jobs on that GPU (default: CUDA_VISIBLE_DEVICES; none: one job "
                             "at a time)")
    parser.add_argument("--jobs", type=Path, default=None, help="JSON-lines file of jobs")
    parser.add_argument("--log-dir", type=Path, default=None,
                        help="where each job's output goes (default: OUTPUT/sweep_logs)")
    parser.add_argument("--dry-run", action="store_true", help="list the jobs and exit")
    parser.epilog = (parser.epilog or "") + "\nAfter --: KEY VALUE overrides for train.py."
    return parser


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
    if args.jobs is not None:
        jobs = load_jobs_file(args.jobs)
    else:
        if not args.protocols or not args.methods:
            raise SystemExit("error: give one or more protocols and --methods "
                             "(or --jobs FILE); see --help")
        if not args.dry_run and not os.environ.get("DATA"):
            raise SystemExit("error: DATA is not set; export DATA=/path/to/datasets")
        methods = [resolve_method(spec) for spec in args.methods]
        jobs = protocol_jobs(args.protocols, methods, args.datasets, args.seeds, args.shots,
                             args.output, opts, args.source)
    if args.dry_run:
        for job in jobs:
            state = "done" if job.finished() else "todo"
            command = job.command if isinstance(job.command, str) else shlex.join(job.command)
            env = " ".join(f"{k}={shlex.quote(v)}" for k, v in job.env.items() if v)
            print(f"{state}  {job.name}\n      {env} {command}".rstrip())
        return 0
    sweep = Sweep(jobs, parse_gpus(args.gpus), args.log_dir or args.output / "sweep_logs")
    try:
        failures = sweep.run()
    except Interrupted as err:
        return 128 + int(err.args[0])
    report(failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
