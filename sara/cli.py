"""`sara <stage> [--params params.yaml] [stage options]`: thin entry points used by dvc.yaml.

Three commands are not stages: `sara sweep [...]` starts an ablation sweep (flows/sweep.py), `sara repro
--jobs N` reproduces the pipeline with independent stages running at the same time (flows/repro.py), and
`sara verify` re-hashes the workspace outputs and DVC's cache (flows/verify.py).
The blind user study is one group: `sara study build` and `sara study report` are the stages `study-build` and
`study-report`; `sara study serve` runs the raters' web page (evaluation/study/server.py).

Each stage lives in `sara/stages/<module>.py` and exposes `add_arguments(parser)` (optional) and
`run(params, **options)`. The CLI only parses arguments, loads and validates params, and calls `run`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# stage name on the command line -> module under sara.stages (one module per DVC stage)
STAGES = {
    "check-params": "check_params",
    "code": "code",
    "data": "data",
    "masks": "masks",
    "corpus": "corpus",
    "pretrain-vae": "pretrain_vae",
    "pretrain-vfm": "pretrain_vfm",
    "features": "features",
    "train-aligner": "train_aligner",
    "eval-aligner": "eval_aligner",
    "init-dit": "init_dit",
    "train-dit": "train_dit",
    "sample": "sample",
    "clipscore": "clipscore",
    "vbench": "vbench",
    "rubric": "rubric",
    "report": "report",
    "mechanism": "mechanism",
    "compare": "compare",
    "study-build": "study_build",
    "study-report": "study_report",
}
STUDY_USAGE = "usage: sara study {build,serve,report} [--params params.yaml] [options]"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] and argv[0] in STAGES or argv[:2] in (["study", "build"], ["study", "report"]):  # a DVC stage
        from sara import warm

        if warm.enabled():  # forked from an interpreter that has imported the heavy libraries (sara/warm.py)
            code = warm.run(argv)
            if code is not None:
                return code
    return main_here(argv)


def main_here(argv: list[str], lifeline: bool = True) -> int:
    """The command in this process. `lifeline`: stop when DVC is gone (off in a warm child, whose socket is its
    lifeline)."""
    from sara.config import ParamsError, load_params
    from sara.env import deterministic_kernels, one_cpu_thread_for_tiny_models
    from sara.errors import InputError
    from sara.io import WRITE_ERRNOS

    if argv[:1] == ["sweep"]:  # orchestration, not a stage: `flows/sweep.py` drives the Prefect deployment
        from flows.sweep import main as sweep_main

        return sweep_main(argv[1:])
    if argv[:1] == ["repro"]:  # orchestration: `flows/repro.py` schedules one `dvc repro -s` per stage
        from flows.repro import main as repro_main

        return repro_main(argv[1:])
    if argv[:1] == ["verify"]:  # not a stage: re-hashes what the stages wrote and DVC's cache
        from flows.verify import main as verify_main

        return verify_main(argv[1:])
    if argv[:1] == ["study"]:
        if argv[1:2] == ["serve"]:  # not a stage: the raters' web page
            from evaluation.study.server import main as serve_main

            return serve_main(argv[2:])
        if argv[1:2] not in (["build"], ["report"]):
            print(STUDY_USAGE, file=sys.stderr)
            return 2
        argv = [f"study-{argv[1]}", *argv[2:]]
    parser = argparse.ArgumentParser(prog="sara", description=__doc__)
    sub = parser.add_subparsers(dest="stage", required=True)
    named = next((arg for arg in argv if not arg.startswith("-")), None)  # the stage on the command line
    module = None
    for name, module_name in STAGES.items():
        p = sub.add_parser(name)
        p.add_argument("--params", default="params.yaml", help="params file (validated before any work)")
        if name == named:  # only this stage's module is imported: every stage process pays for its own imports only
            module = _stage_module(module_name)
            if module is not None and hasattr(module, "add_arguments"):
                module.add_arguments(p)
    args = parser.parse_args(argv)
    if module is None:
        parser.error(f"stage {args.stage!r} is not available in this checkout")
    try:
        params = load_params(args.params)
    except (ParamsError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    options = {k: v for k, v in vars(args).items() if k not in ("stage", "params")}
    one_cpu_thread_for_tiny_models(params.project.scale)  # before the stage imports torch
    deterministic_kernels(params.project.deterministic)  # before the stage runs a kernel
    if lifeline and os.environ.get("DVC_STAGE"):  # run by DVC: stop when DVC is gone, never train on as an orphan
        from sara.lifeline import die_with_parent

        die_with_parent()
    try:
        module.run(params, **options)
    except InputError as err:  # bad params, weights or data: the message says what to fix, a traceback would not
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # storage refused a write (no space, read-only): the path and the cause, no traceback
        if err.errno not in WRITE_ERRNOS:
            raise
        print(f"error: cannot write {err.filename or 'a file'}: {err.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # SIGINT, or SIGTERM (sara.tracking.Terminated); the MLflow run is KILLED
        print(f"interrupted: {err or 'SIGINT'}", file=sys.stderr)
        return 143 if "SIGTERM" in str(err) else 130
    return 0


def _stage_module(module_name: str):
    try:
        return importlib.import_module(f"sara.stages.{module_name}")
    except ModuleNotFoundError as err:
        if err.name == f"sara.stages.{module_name}":
            return None
        raise


if __name__ == "__main__":
    raise SystemExit(main())
