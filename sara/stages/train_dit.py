"""`sara train-dit --run <run>`: Stage 2 continual training of one run (sft | videorepa | moalign | sara-<op>).

Works as a plain process (one rank) and under `deepspeed --num_gpus N` / `torchrun --nproc_per_node N`
(every rank runs this; only rank 0 talks to MLflow):
    deepspeed --num_gpus 8 sara/cli.py train-dit --params configs/paper.yaml --run sara-or
    torchrun --nproc_per_node 8 sara/cli.py train-dit --params configs/paper.yaml --dit-run sara-or
The MLflow run `train_dit/<run>` records exactly the params keys that dvc.yaml lists for `train_dit-<run>`
(`sara.runs.Run.params`), per-step metrics, and is marked FAILED when training stops (e.g. a NaN loss).

The model folder `<train.out_dir>/<run>/` holds only what determines the model; the run's timings (seconds per
step, tokens per second, peak memory) and the step it resumed from go to MLflow and to `timings_path(run)`,
an uncached DVC metrics file, so a rerun that trains bit-identical weights leaves every downstream stage current.
"""

from __future__ import annotations

import argparse
import os
from contextlib import nullcontext
from pathlib import Path

from sara.config import Params
from sara.runs import Run, run_argument


def timings_path(run: Run) -> Path:
    """`outputs/metrics/<run>/train_dit.json`: the run's timings (uncached DVC metrics, beside its evaluation's)."""
    from sara.stages.per_run import metrics_path

    return metrics_path("train_dit", run.name)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # `--dit-run` is the same option for torchrun, whose own parser mistakes `--run` for its `--run-path`
    # (an unknown run name is refused here, before anything heavy starts)
    parser.add_argument("--run", "--dit-run", dest="run", required=True, type=run_argument,
                        help="sft | videorepa | moalign | sara-and | sara-or | sara-xor | sara-none")
    parser.add_argument("--no-resume", dest="resume", action="store_false", help="ignore a matching saved train state")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)  # deepspeed launcher


def run(params: Params, run: Run, resume: bool = True, local_rank: int | None = None) -> None:
    from sara.methods import params_subset
    from sara.train.stage2 import train_stage2

    if local_rank is not None:
        os.environ.setdefault("LOCAL_RANK", str(local_rank))
    keys = list(run.params)
    is_main = int(os.environ.get("RANK", "0")) == 0
    if is_main:
        from sara.tracking import log_metrics, run_identity, stage_run

        sections = [k for k in keys if "." not in k]
        extra = {k: v for k, v in params_subset(params, keys).items() if "." in k}
        identity, tags = run_identity(params, run)
        ctx = stage_run("train_dit", params, sections, variant=run.name, extra_params={**extra, **identity}, tags=tags)
        from sara.stages.validation_log import log_validation

        log, sink = log_metrics, log_validation
    else:
        ctx, log, sink = nullcontext(), None, None
    with ctx:
        result = train_stage2(params, run, log=log, resume=resume, code_entry="sara/stages/train_dit.py",
                              validation_sink=sink)
        if is_main:
            import mlflow

            from sara.io import write_json
            from sara.tracking import log_artifact
            from sara.train.stage2 import TIMINGS

            log_artifact(result.run_dir / "metrics.json")
            mlflow.set_tag("sara.resumed_from_step", str(result.start_step))
            timings = {"resumed_from": result.start_step, **{k: result.final[k] for k in TIMINGS if k in result.final}}
            write_json(timings_path(run), {"train_dit": timings})
    print(f"[train_dit] {run}: {result.steps} steps (resumed from {result.start_step}) -> {result.run_dir}")
