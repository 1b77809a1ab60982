"""`sara repro --jobs N`: reproduce the DVC pipeline with independent stages running at the same time.

`dvc repro` runs one stage after another. DVC supports running stages in parallel when each is reproduced by its
own `dvc repro -s STAGE` process: it releases the repository lock while a stage's command runs and guards the
stage's outputs with its read/write locks (dvc.org/doc/command-reference/repro, "Parallel stage execution"). It
leaves the scheduling to the user; this module is that scheduler, and nothing more: DVC runs every stage, hashes
it and writes dvc.lock, exactly as in a serial `dvc repro`.

  1. plan      `dvc status` names the stages whose inputs changed; they and every stage downstream of them run
  2. schedule  a stage starts once all its upstream stages finished, up to `--jobs` at a time: the stages of no
               run first, then run by run in dvc.yaml's order (a run is scored before a later one trains), and
               among those the one with the longest chain of stages below it (the critical path); every training
               budget is a number of steps, so stages that share the GPU learn what each learns alone and
               everything overlaps freely (only their wall times and MFU are shared)
  3. record    each stage's output goes to `<logs>/<stage>.log`; its wall time, attempts and outcome to `--times`

DVC takes its repository lock to hash a stage's inputs and outputs; each `dvc repro` waits for it
(`--wait-for-lock`), and a race that still fails is retried (or, once the stage's command has run, its outputs
committed). A stage's own error is not retried: the stages downstream of it are skipped, independent branches go on.

`--extra-train-seeds K[,K]` then trains every method again with each of those `train.seed` values for the
comparison's training-seed spread (flows/train_seeds.py).

Before it plans, the whole params file is validated (one line, exit 2, nothing run or deleted) and what killed
runs left behind is cleared (flows/leftovers.py). SIGTERM or Ctrl-C is passed on to every running stage's process
group; `sara repro` waits for them to end (their MLflow runs KILLED), starts nothing new and exits 143 / 130 with
one line saying what stopped and how to resume.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from flows import dvc_runner
from flows.dag import Dag, load_dag
from flows.dvc_runner import DvcError, run_dvc
from sara.env import STAGE_CORES_ENV
from sara.runs import Run

RETRY_DELAYS_S = (2.0, 5.0, 10.0, 20.0)  # a DVC lock is held for seconds, while it hashes one stage


@dataclass
class StageOutcome:
    stage: str
    status: str  # "ran", "failed", "skipped" (an upstream stage failed)
    seconds: float = 0.0  # wall time of the stage's `dvc repro -s`, retries included
    start_s: float = 0.0  # offset from the start of the whole run
    attempts: int = 0
    reason: str = ""  # a failure's last line, or the upstream stage that failed


def changed_stages(repo: Path, env: Mapping[str, str]) -> set[str]:
    """Stages whose dependencies, params or outputs differ from dvc.lock (or that it does not list)."""
    out = run_dvc(["--wait-for-lock", "status", "--json"], repo, env, log=lambda _: None)
    return set(json.loads(out[out.index("{"):] if "{" in out else "{}"))


def plan(dag: Dag, changed: set[str], targets: list[str] | None = None) -> list[str]:
    """The stages to run, upstream first: every changed stage and its descendants (their inputs will change),
    limited to the targets and what they need when targets are given; frozen stages never."""
    unknown = [t for t in targets or [] if t not in dag.stages]
    if unknown:
        raise ValueError(f"no stage named {unknown[0]!r} in dvc.yaml (stages: {', '.join(sorted(dag.stages))})")
    frozen = {s for s, info in dag.stages.items() if info.frozen}
    # a frozen stage is never reproduced (`dvc repro -s` fails on its absent inputs); the stages below it find
    # their own inputs changed in `dvc status` when its outputs are new
    todo = {s for s in changed if s in dag.stages} - frozen
    todo |= dag.descendants(todo)
    return dag.topological((todo - frozen) & dag.needed_by(targets))


def by_depth(dag: Dag, stages: list[str]) -> list[str]:
    """`stages` reordered so that, of two stages, the one with the longer chain of stages depending on it comes
    first (ties keep their order): started first, it shortens the run the most. E.g. the encoder's chain
    (features, aligner, Stage 2, ...) is longer than the VAE's, so the encoder trains first."""
    planned = set(stages)
    below: dict[str, set[str]] = {s: set() for s in stages}
    for s in stages:
        for u in dag.stages[s].upstream & planned:
            below[u].add(s)
    depth: dict[str, int] = {}
    for s in reversed(stages):  # topological order reversed: every stage below is measured first
        depth[s] = 1 + max((depth[d] for d in below[s]), default=0)
    return sorted(stages, key=lambda s: -depth[s])  # stable: equal depths keep the topological order


def run_first(dag: Dag, stages: list[str]) -> list[str]:
    """`by_depth`, then by run: the stages of no run (pretraining, the aligner, compare) and of the reference rows
    (`base`, `oracle`) first, then each Stage 2 run's stages in the order its runs appear in dvc.yaml (the params'
    `matrix.runs`). So when a slot frees, a finished run's sampling and scoring start before a later run's
    training: a run stopped by its device time has scored its first runs (the lab lists the runs its
    pre-registered claims need first), not trained every run part-way."""
    order: dict[str, int] = {}
    for info in dag.stages.values():
        if isinstance(info.row, Run) and info.item not in order:
            order[info.item] = len(order) + 1

    def rank(stage: str) -> int:
        info = dag.stages[stage]
        return order.get(info.item, 0) if isinstance(info.row, Run) else 0

    return sorted(by_depth(dag, stages), key=rank)  # stable: within a run, the longer chain first


def repro_stage(repo: Path, stage: str, env: Mapping[str, str], log_file: Path,
                delays: tuple[float, ...] = RETRY_DELAYS_S, dvc: Callable[..., str] = run_dvc) -> int:
    """`dvc --wait-for-lock repro -s STAGE`, its output appended to `log_file`. Returns the attempts made.

    `--wait-for-lock` makes DVC wait for the repository lock rather than give up after 3 s, which it otherwise
    does when another stage is hashing. A lock race that still fails the command is handled by where it struck:
    before the stage's command ran, the repro is retried; after it ran (DVC re-takes the lock to save the
    results), the outputs are in place and only unrecorded, so `dvc commit` records them: rerunning would train
    the same model again (seen on the GPU: one Stage 2 run trained twice, 140 s on the critical path)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("a") as fh:
        ran = False

        def write(line: str) -> None:
            nonlocal ran
            ran = ran or line.startswith(f"Running stage '{stage}'")
            fh.write(line + "\n")
            fh.flush()

        for attempt, delay in enumerate((*delays, None), start=1):
            try:
                if ran:
                    write(f"[repro] the command finished but DVC did not save it: dvc commit {stage}")
                    dvc(["--wait-for-lock", "commit", "-f", stage], repo, env, log=write)
                else:
                    dvc(["--wait-for-lock", "repro", "-s", stage], repo, env, log=write)
                return attempt
            except DvcError as exc:
                if not exc.transient or delay is None:
                    raise
                write(f"[repro] lock race (attempt {attempt}); retrying in {delay:.0f} s")
                time.sleep(delay)
    raise AssertionError("unreachable")


def run_parallel(
    dag: Dag,
    stages: list[str],
    jobs: int,
    run_one: Callable[[str], int],
    log: Callable[[str], object] = print,
) -> dict[str, StageOutcome]:
    """Run `stages` (topologically ordered) with `run_one(stage) -> attempts`, each once all of its upstream stages
    among `stages` have run, at most `jobs` at once."""
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    planned = set(stages)
    outcomes: dict[str, StageOutcome] = {}
    pending = run_first(dag, stages)
    running: dict[Future[int], tuple[str, float]] = {}
    t0 = time.monotonic()

    def upstream(stage: str) -> set[str]:
        return set(dag.stages[stage].upstream) & planned

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        while pending or running:
            for stage in list(pending):
                ups = upstream(stage)
                failed = next((u for u in sorted(ups) if u in outcomes and outcomes[u].status != "ran"), None)
                if failed is not None:
                    pending.remove(stage)
                    outcomes[stage] = StageOutcome(stage, "skipped", reason=f"upstream {failed} did not run")
                    log(f"[repro] skip {stage}: upstream {failed} did not run")
                    continue
                if len(running) >= jobs or not ups <= outcomes.keys():
                    continue
                pending.remove(stage)
                running[pool.submit(run_one, stage)] = (stage, time.monotonic())
                log(f"[repro] start {stage} ({len(outcomes)}/{len(stages)} done, {len(running)} running)")
            if not running:
                continue  # everything left was just skipped
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                stage, started = running.pop(fut)
                seconds, start_s = time.monotonic() - started, started - t0
                try:
                    attempts = fut.result()
                    outcomes[stage] = StageOutcome(stage, "ran", seconds, start_s, attempts)
                    log(f"[repro] done  {stage} in {seconds:.0f} s ({len(outcomes)}/{len(stages)})")
                except Exception as exc:  # noqa: BLE001 - a stage's failure is recorded; the others go on
                    reason = exc.reason if isinstance(exc, DvcError) else f"{type(exc).__name__}: {exc}"
                    outcomes[stage] = StageOutcome(stage, "failed", seconds, start_s, 0, reason)
                    log(f"[repro] FAILED {stage} after {seconds:.0f} s: {reason}")
    return {s: outcomes[s] for s in stages}


def share_cores(jobs: int, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The stages' environment: unless the user chose, each of `jobs` concurrent stages gets its share of the
    cores for PyTorch's intra-op threads (N processes x all cores would oversubscribe the machine)."""
    out = dict(os.environ if env is None else env)
    if jobs > 1:
        share = str(max(1, (os.cpu_count() or 1) // jobs))
        out.setdefault("OMP_NUM_THREADS", share)
        out.setdefault(STAGE_CORES_ENV, share)
    return out


def reproduce(repo: Path, dag: Dag, jobs: int, env: Mapping[str, str], logs: Path,
              targets: list[str] | None = None) -> tuple[dict[str, StageOutcome], list[str], float]:
    """One pass: plan, run in parallel, check. Returns each stage's outcome, the stages DVC still finds out of
    date afterwards, and the wall seconds."""
    stages = plan(dag, changed_stages(repo, env), targets)
    print(f"[repro] {len(stages)} of {len(dag.stages)} stages to run, {jobs} at a time; logs in {logs}/")
    t0 = time.monotonic()
    outcomes = run_parallel(dag, stages, jobs, lambda s: repro_stage(repo, s, env, logs / f"{s}.log"))
    wall = time.monotonic() - t0
    bad = [o for o in outcomes.values() if o.status != "ran"]
    left = plan(dag, changed_stages(repo, env), targets)  # what DVC still finds to do
    print(f"[repro] {len(outcomes) - len(bad)} ran, {len(bad)} failed or skipped, {wall:.0f} s; "
          + ("dvc status: up to date" if not left else f"dvc status: not up to date: {', '.join(left)}"))
    for o in bad:
        print(f"[repro] {o.status}: {o.stage}: {o.reason}", file=sys.stderr)
    return outcomes, left, wall


def all_ran(outcomes: dict[str, StageOutcome], left: list[str]) -> bool:
    """Every planned stage ran and DVC finds nothing left to do."""
    return not left and all(o.status == "ran" for o in outcomes.values())


def _times(jobs: int, outcomes: dict[str, StageOutcome], wall: float) -> dict:
    return {"jobs": jobs, "wall_s": round(wall, 1), "stages": [asdict(o) for o in outcomes.values()]}


def _seeds(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected seeds separated by commas, e.g. 1025,1026") from None


class Interrupted(BaseException):
    """SIGTERM / SIGINT reached `sara repro` (BaseException: no scheduler `except Exception` may swallow it)."""

    def __init__(self, signum: int, stages: list[str]) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum, self.stages = signum, stages


@contextmanager
def passing_signals_on() -> Iterator[None]:
    """SIGTERM and SIGINT are passed on to every running stage (flows.dvc_runner.stop), then raise Interrupted in
    the main thread: the scheduler starts nothing more and waits for its running stages on the way out."""

    def handler(signum: int, frame: object) -> None:
        for s in (signal.SIGTERM, signal.SIGINT):  # a second signal changes nothing: the stop is under way
            signal.signal(s, lambda *_: None)
        raise Interrupted(signum, dvc_runner.stop(signum))

    if threading.current_thread() is not threading.main_thread():
        yield  # Python runs signal handlers in the main thread only
        return
    dvc_runner.allow_starts()
    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def main(argv: list[str] | None = None) -> int:
    try:
        with passing_signals_on():
            return _main(argv)
    except Interrupted as stop:
        running = ", ".join(stop.stages) or "none"
        print(f"[repro] stopped by {stop}: passed it on to the running stages ({running}) and waited for them to "
              f"end (their MLflow runs are KILLED); run `sara repro` again to resume (Stage 2 continues from its "
              f"last checkpoint)", file=sys.stderr)
        return 128 + stop.signum


def _main(argv: list[str] | None) -> int:
    from flows.leftovers import sweep
    from flows.train_seeds import check_extra_seeds, train_extra_seeds
    from sara.deps import ROOT
    from sara.pipeline import out_of_date
    from sara.config import ParamsError, load_params
    from sara.errors import InputError

    ap = argparse.ArgumentParser(prog="sara repro", description=__doc__.split("\n\n")[0])
    ap.add_argument("targets", nargs="*", help="stages to bring up to date (default: the whole pipeline)")
    ap.add_argument("-j", "--jobs", type=int, default=4, help="stages running at once (default 4)")
    ap.add_argument("--repo", type=Path, default=Path.cwd(), help="repository root (default: the current directory)")
    ap.add_argument("--logs", type=Path, default=Path("tmp/repro_logs"), help="one log file per stage (under --repo)")
    ap.add_argument("--times", type=Path, default=None, help="write each stage's wall time and outcome here (JSON)")
    ap.add_argument("--extra-train-seeds", type=_seeds, default=[], metavar="SEED[,SEED...]",
                    help="then train every method again with these train.seed values, for `sara compare` "
                         "(flows/train_seeds.py)")
    args = ap.parse_args(argv)
    repo = args.repo.resolve()
    try:  # the whole params file, before anything runs or is deleted (dvc repro: the check_params stage)
        params = load_params(repo / "params.yaml")
    except ParamsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    env = share_cores(args.jobs)
    dag = load_dag(repo)
    try:  # bad arguments: one line, before any work
        if args.jobs < 1:
            raise ValueError(f"--jobs {args.jobs}: jobs must be at least 1")
        if repo == ROOT and out_of_date(repo / "params.yaml", repo / "dvc.yaml"):  # the code's own DAG only
            raise ValueError("dvc.yaml is not what params.yaml says (its run matrix or paths changed): run "
                             "`python -m sara.pipeline` first")
        plan(dag, set(), args.targets or None)  # names every target
        check_extra_seeds(repo, args.extra_train_seeds)
    except ValueError as err:
        ap.error(str(err))
    logs = args.logs if args.logs.is_absolute() else repo / args.logs
    targets = args.targets or None
    try:
        sweep(repo, params.project.mlflow_experiment)
    except InputError as err:  # an unavailable tracking store: every stage would fail on it
        print(f"error: {err}", file=sys.stderr)
        return 2
    outcomes, left, wall = reproduce(repo, dag, args.jobs, env, logs, targets)
    ok = all_ran(outcomes, left)
    times = _times(args.jobs, outcomes, wall)
    if ok and args.extra_train_seeds:
        def one_pass(pass_targets: list[str] | None, tag: str) -> bool:
            o, rest, w = reproduce(repo, dag, args.jobs, env, logs / tag, pass_targets)
            times.setdefault("passes", {})[tag] = _times(args.jobs, o, w)
            return all_ran(o, rest)

        ok = train_extra_seeds(repo, dag, args.extra_train_seeds, one_pass, targets, env)
    if args.times:
        args.times.parent.mkdir(parents=True, exist_ok=True)
        args.times.write_text(json.dumps(times, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
