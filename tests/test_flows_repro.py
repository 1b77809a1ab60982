"""`sara repro --jobs N` (flows/repro.py): one `dvc repro -s` per stage, independent stages at the same time.

The scheduler is tested with a fake stage runner (barriers prove overlap without timing anything); the whole
command once on the toy DVC repository, where DVC itself must leave dvc.lock complete and `dvc status` clean.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from flows.dag import Dag, StageInfo, load_dag
from flows.dvc_runner import DvcError
from flows.repro import main, plan, repro_stage, run_parallel, share_cores
from flows_testlib import FAILING_SEED, make_toy_repo, toy_loss

ROOT = Path(__file__).resolve().parents[1]


def _dag(edges: dict[str, set[str]]) -> Dag:
    return Dag({n: StageInfo(n, (), frozenset(up)) for n, up in edges.items()})


# corpus -> pretrain_vae -> init_dit; corpus -> pretrain_vfm -> features -> aligner; train_dit-a, -b need init_dit
# and the aligner: the encoder's chain is one stage longer than the VAE's
LAB_LIKE = _dag({
    "corpus": set(), "pretrain_vae": {"corpus"}, "pretrain_vfm": {"corpus"}, "features": {"pretrain_vfm"},
    "aligner": {"features"}, "init_dit": {"pretrain_vae"}, "train_dit-a": {"init_dit", "aligner"},
    "train_dit-b": {"init_dit", "aligner"},
})


class Recorder:
    """A fake `run_one`: records start/finish order and the most stages seen running at once."""

    def __init__(self, barriers: dict[str, threading.Barrier] | None = None, fail: set[str] | None = None):
        self.lock = threading.Lock()
        self.events: list[tuple[str, str]] = []
        self.running: set[str] = set()
        self.together: list[set[str]] = []
        self.barriers = barriers or {}
        self.fail = fail or set()

    def __call__(self, stage: str) -> int:
        with self.lock:
            self.events.append(("start", stage))
            self.running.add(stage)
            self.together.append(set(self.running))
        try:
            if stage in self.barriers:
                self.barriers[stage].wait(timeout=20)  # raises BrokenBarrierError unless its partner runs too
            if stage in self.fail:
                raise RuntimeError(f"{stage} broke")
            return 1
        finally:
            with self.lock:
                self.running.discard(stage)
                self.events.append(("end", stage))


def test_independent_stages_run_at_the_same_time_and_each_waits_for_its_upstream():
    both = threading.Barrier(2)
    rec = Recorder(barriers={"train_dit-a": both, "train_dit-b": both})
    out = run_parallel(LAB_LIKE, LAB_LIKE.topological(set(LAB_LIKE.stages)), 4, rec, log=lambda _: None)
    assert {o.status for o in out.values()} == {"ran"}
    order = rec.events
    for stage, info in LAB_LIKE.stages.items():
        for up in info.upstream:
            assert order.index(("end", up)) < order.index(("start", stage)), (up, stage)


class InFlight:
    """The scheduler's own account of what runs at once, read from its log (`start X` ... `done X`).

    Both lines are written by the scheduling thread, `start` right after the stage is handed to a worker and
    `done` / `FAILED` once its result was collected, so the stages between them are exactly those it let run
    together. Deterministic with stages that finish at once: a scheduler that admits too many stages admits them in
    the same pass, before it waits for any result."""

    def __init__(self) -> None:
        self.now: set[str] = set()
        self.together: list[set[str]] = []
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        words = line.split()
        if words[:2] == ["[repro]", "start"]:
            self.now.add(words[2])
            self.together.append(set(self.now))
        elif words[1] in ("done", "FAILED"):
            self.now.discard(words[2])


def test_pretraining_stages_share_the_gpu():
    """Every budget is a number of steps, so two pretraining stages side by side learn what each learns alone:
    pretrain_vae and pretrain_vfm, both ready after corpus, run at the same time (the base is on the critical
    path; the encoder's minutes come off it)."""
    both = threading.Barrier(2)  # each waits for the other: run one at a time, they break it and fail
    rec = Recorder(barriers={"pretrain_vae": both, "pretrain_vfm": both})
    out = run_parallel(LAB_LIKE, LAB_LIKE.topological(set(LAB_LIKE.stages)), 8, rec, log=lambda _: None)
    assert {s: o.status for s, o in out.items() if o.status != "ran"} == {}


def test_of_two_ready_stages_the_one_with_the_longer_chain_below_starts_first():
    """Encoder first: features waits on it and overlaps the VAE; VAE first would leave features for the end."""
    rec = Recorder()
    vae_first = ["corpus", "pretrain_vae", "init_dit", "pretrain_vfm", "features", "aligner", "train_dit-a",
                 "train_dit-b"]  # a valid topological order that lists the VAE's chain first
    run_parallel(LAB_LIKE, vae_first, 8, rec, log=lambda _: None)
    starts = [s for e, s in rec.events if e == "start"]
    assert starts.index("pretrain_vfm") < starts.index("pretrain_vae")
    assert starts.index("features") < starts.index("init_dit")


def test_a_finished_runs_sampling_starts_before_a_later_runs_training():
    """Lab run 6: with the 12 Stage 2 runs ranked only by chain length, every training started before any finished
    run was sampled, so the device time ran out with three pre-registered claims' runs trained but unscored.
    Run by run in dvc.yaml's order (the matrix's), the reference row first: sft is sampled and scored before
    the third run trains."""
    dag = _dag({
        "init_dit": set(), "train_dit-sft": {"init_dit"}, "train_dit-videorepa": {"init_dit"},
        "train_dit-sara-or": {"init_dit"}, "sample-base": {"init_dit"}, "sample-sft": {"train_dit-sft"},
        "sample-videorepa": {"train_dit-videorepa"}, "sample-sara-or": {"train_dit-sara-or"},
        "rubric-base": {"sample-base"}, "rubric-sft": {"sample-sft"}, "rubric-videorepa": {"sample-videorepa"},
        "rubric-sara-or": {"sample-sara-or"},
    })
    rec = Recorder()
    run_parallel(dag, dag.topological(set(dag.stages)), 1, rec, log=lambda _: None)
    starts = [s for e, s in rec.events if e == "start"]
    assert starts.index("rubric-base") < starts.index("train_dit-sft")
    assert starts.index("rubric-sft") < starts.index("train_dit-videorepa") < starts.index("train_dit-sara-or")
    assert starts.index("rubric-videorepa") < starts.index("train_dit-sara-or")


def test_jobs_bounds_how_many_run_at_once():
    dag = _dag({f"s{i}": set() for i in range(6)})
    for jobs in (1, 2, 4):
        seen = InFlight()
        run_parallel(dag, sorted(dag.stages), jobs, Recorder(), log=seen)
        assert max(len(s) for s in seen.together) == jobs, (jobs, seen.together)  # reached, never exceeded
    with pytest.raises(ValueError, match="jobs must be at least 1"):
        run_parallel(dag, sorted(dag.stages), 0, Recorder())


def test_a_failing_stage_skips_its_descendants_and_independent_branches_go_on():
    rec = Recorder(fail={"pretrain_vfm"})
    lines: list[str] = []
    out = run_parallel(LAB_LIKE, LAB_LIKE.topological(set(LAB_LIKE.stages)), 4, rec, log=lines.append)
    assert out["pretrain_vfm"].status == "failed" and "pretrain_vfm broke" in out["pretrain_vfm"].reason
    assert out["aligner"].status == "skipped" and out["train_dit-a"].status == "skipped"
    assert out["init_dit"].status == "ran"  # the VAE branch does not need the encoder
    assert any("FAILED pretrain_vfm" in ln for ln in lines)


def test_plan_runs_changed_stages_and_everything_downstream_within_the_targets():
    stages = plan(LAB_LIKE, {"pretrain_vfm"})
    assert set(stages) == {"pretrain_vfm", "features", "aligner", "train_dit-a", "train_dit-b"}
    assert stages.index("pretrain_vfm") < stages.index("features") < stages.index("aligner")
    assert set(plan(LAB_LIKE, {"pretrain_vfm"}, ["features"])) == {"pretrain_vfm", "features"}
    assert plan(LAB_LIKE, set()) == []
    with pytest.raises(ValueError, match="no stage named 'train_dit-c'"):
        plan(LAB_LIKE, {"corpus"}, ["train_dit-c"])


def test_a_frozen_stage_is_never_planned_and_does_not_hold_up_the_stages_below_it():
    """A base brought in from another machine (scripts/lab_base_bundle.py) is frozen (`dvc freeze`): its
    pretraining inputs are absent, so `dvc status` reports it changed, and `dvc repro -s` of it fails on them. The
    plan leaves it out, and the stages below it run from its outputs (they see their own inputs changed)."""
    import dataclasses

    dag = Dag({n: dataclasses.replace(info, frozen=n in {"corpus", "pretrain_vae", "pretrain_vfm", "features",
                                                           "aligner", "init_dit"})
               for n, info in LAB_LIKE.stages.items()})
    assert plan(dag, {"corpus", "init_dit", "train_dit-a"}) == ["train_dit-a"]
    assert plan(dag, {"corpus"}) == []  # a frozen stage's change does not reach below it: DVC reports theirs
    assert set(plan(dag, {"train_dit-a", "train_dit-b"}, ["train_dit-b"])) == {"train_dit-b"}


def test_each_concurrent_stage_gets_a_share_of_the_cores_unless_the_user_chose():
    n = os.cpu_count() or 1
    assert share_cores(2, {})["OMP_NUM_THREADS"] == str(max(1, n // 2))
    assert share_cores(2, {"OMP_NUM_THREADS": "7"})["OMP_NUM_THREADS"] == "7"
    assert "OMP_NUM_THREADS" not in share_cores(1, {})


LOCK_ERROR = "ERROR: Unable to acquire lock. Most likely another DVC process is running"


class FakeDvc:
    """Stands in for `run_dvc`: replays scripted outcomes (output lines, and whether it fails with a lock race)."""

    def __init__(self, script: list[tuple[list[str], bool]]):
        self.script = script
        self.calls: list[list[str]] = []

    def __call__(self, args, repo, env, log):
        self.calls.append(args)
        lines, lock_race = self.script.pop(0)
        for line in lines:
            log(line)
        if lock_race:
            raise DvcError(args, 255, "\n".join([*lines, LOCK_ERROR]))
        return "\n".join(lines)


def test_a_lock_race_after_the_stage_ran_commits_its_outputs_instead_of_training_again(tmp_path: Path):
    """On the GPU a Stage 2 run finished, DVC failed to re-take the lock to save it, and the retry trained it again."""
    dvc = FakeDvc([
        (["Running stage 'train_dit-sara-xor':", "> sara train-dit --run sara-xor", "train_dit/sara-xor: 100%",
          "ERROR: failed to reproduce 'train_dit-sara-xor': Unable to acquire lock."], True),
        (["Updating lock file 'dvc.lock'"], False),
    ])
    attempts = repro_stage(tmp_path, "train_dit-sara-xor", {}, tmp_path / "log", delays=(0.0,), dvc=dvc)
    assert attempts == 2
    assert dvc.calls == [["--wait-for-lock", "repro", "-s", "train_dit-sara-xor"],
                         ["--wait-for-lock", "commit", "-f", "train_dit-sara-xor"]]
    assert "dvc commit train_dit-sara-xor" in (tmp_path / "log").read_text()


def test_a_lock_race_before_the_stage_ran_reproduces_it_again(tmp_path: Path):
    dvc = FakeDvc([([], True), (["Running stage 'masks':"], False)])
    assert repro_stage(tmp_path, "masks", {}, tmp_path / "log", delays=(0.0,), dvc=dvc) == 2
    assert [c[1] for c in dvc.calls] == ["repro", "repro"]


def test_a_stage_error_is_not_retried(tmp_path: Path):
    def failing(args, repo, env, log):
        raise DvcError(args, 1, "Running stage 'masks':\nValueError: bad mask")

    with pytest.raises(DvcError, match="bad mask"):
        repro_stage(tmp_path, "masks", {}, tmp_path / "log", delays=(0.0,), dvc=failing)


@pytest.fixture()
def toy(tmp_path: Path, tracking) -> Path:
    """The toy DAG, its stages logging to the test's own tracking store (`tracking`): without MLFLOW_TRACKING_URI
    `sara repro` fills in the project's mlflow.db, which every test process would then share."""
    return make_toy_repo(tmp_path / "repo", ROOT / "params.yaml")


def _status(repo: Path) -> dict:
    out = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=repo, capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(out.stdout)


@pytest.mark.slow  # `dvc repro` of the toy DAG
def test_sara_repro_reports_a_failing_stage_and_skips_what_needs_it(toy: Path, capsys):
    params = yaml.safe_load((toy / "params.yaml").read_text())
    params["train"]["seed"] = FAILING_SEED
    (toy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    rc = main(["-j", "2", "--repo", str(toy), "rubric@sft", "data"])
    err = capsys.readouterr().err
    assert rc == 1
    assert f"failed: train_dit@sft: train_dit@sft: SystemExit: toy stage fails on purpose" in err or (
        "failed: train_dit@sft" in err and "fails on purpose" in err), err
    assert "skipped: rubric@sft: upstream train_dit@sft did not run" in err
    assert "data" in yaml.safe_load((toy / "dvc.lock").read_text())["stages"]


@pytest.mark.slow(wall_s=54)  # `dvc repro` of the toy DAG, three passes
def test_sara_repro_in_parallel_then_an_extra_training_seed_leaves_everything_recorded(toy: Path, capsys):
    """The main pass leaves dvc.lock complete and `dvc status` clean; `--extra-train-seeds 7` then puts each
    method's rubric folder of seed 7 in `<run>.seed7/` (what `sara compare` reads) and leaves the main seed's
    folders, params.yaml and dvc.lock's view of them as before."""
    params_text = (toy / "params.yaml").read_text()
    main_seed = yaml.safe_load(params_text)["train"]["seed"]
    lam = yaml.safe_load(params_text)["trd"]["lam_trd"]
    targets = ["rubric@sft", "rubric@sara-or"]
    rc = main(["-j", "3", "--repo", str(toy), "--extra-train-seeds", "7", "--times", str(toy / "t.json"), *targets])
    assert rc == 0, capsys.readouterr()
    lock = yaml.safe_load((toy / "dvc.lock").read_text())["stages"]
    ran = {"data", *targets, *(t.replace("rubric", "train_dit") for t in targets)}
    assert ran <= set(lock), set(lock)
    times = json.loads((toy / "t.json").read_text())
    assert {s["stage"] for s in times["stages"]} == ran and {s["status"] for s in times["stages"]} == {"ran"}
    assert (toy / "tmp" / "repro_logs" / "data.log").is_file()
    rubric = toy / "outputs" / "rubric"

    def loss(folder: str) -> float:
        return json.loads((rubric / folder / "done.json").read_text())["final_loss"]

    assert not (rubric / "videorepa.seed7").exists()  # not a target
    assert loss("sft.seed7") == pytest.approx(toy_loss("none", 7, lam, 2))
    assert loss("sara-or.seed7") == pytest.approx(toy_loss("or", 7, lam, 2))
    assert loss("sft") == pytest.approx(toy_loss("none", main_seed, lam, 2))
    assert (toy / "params.yaml").read_text() == params_text
    assert not {k for k in _status(toy) if k in {"data", *targets, "train_dit@sft", "train_dit@sara-or"}}
    passes = times["passes"]
    assert set(passes) == {"seed7", "restore"}
    assert {s["stage"] for s in passes["seed7"]["stages"]} == {"train_dit@sft", "train_dit@sara-or", *targets}
    assert "dvc status: not up to date" not in capsys.readouterr().out  # every pass ended up to date


@pytest.mark.slow  # git + dvc init of the toy DAG
def test_a_bad_extra_seed_fails_in_one_line_before_any_work(toy: Path, capsys):
    main_seed = yaml.safe_load((toy / "params.yaml").read_text())["train"]["seed"]
    for bad, says in ((str(main_seed), "that is train.seed"), ("7,7", "a seed is listed twice"),
                      ("seven", "expected seeds separated by commas")):
        with pytest.raises(SystemExit):
            main(["-j", "2", "--repo", str(toy), "--extra-train-seeds", bad, "rubric@sft"])
        assert says in capsys.readouterr().err, bad
    assert not (toy / "dvc.lock").exists()  # nothing ran


@pytest.mark.slow  # git + dvc init of the toy DAG
def test_an_unknown_target_or_no_jobs_fails_in_one_line_before_any_work(toy: Path, capsys):
    for argv, says in ((["train_dit@nosuch"], "no stage named 'train_dit@nosuch'"),
                       (["-j", "0", "data"], "jobs must be at least 1")):
        with pytest.raises(SystemExit):
            main(["--repo", str(toy), *argv])
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err, err
    assert not (toy / "dvc.lock").exists()  # nothing ran


@pytest.mark.slow  # git + dvc init of the toy DAG
def test_a_dvc_yaml_stale_for_params_yaml_is_refused_in_one_line(monkeypatch, capsys):
    """The DAG is written from params.yaml's run matrix: after `cp configs/lab.yaml params.yaml` without
    `python -m sara.pipeline`, `sara repro` would train the old matrix; it stops first and names the fix."""
    import sara.pipeline
    from sara.deps import ROOT

    monkeypatch.setattr(sara.pipeline, "out_of_date", lambda *a: True)
    with pytest.raises(SystemExit):
        main(["--repo", str(ROOT), "nosuch"])  # never a real stage: nothing runs even without the check
    err = capsys.readouterr().err
    assert "run `python -m sara.pipeline` first" in err and "Traceback" not in err
