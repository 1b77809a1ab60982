"""The run registry: every Stage 2 run the pipeline trains, parsed once into a typed `Run`.

A run is one method of Stage 2 (the paper's baselines) and, for `sara`, one routing operator: `sft`, `videorepa`, `moalign`,
`sara-<op>`. `DAG_RUNS` is the list the pipeline trains, samples and reports (dvc.yaml is written from it by
`python -m sara.pipeline`); `sara-none` is a valid run name outside the DAG (the routing-free ablation).
Everything that names runs (the `train_dit-<run>` / `sample-<run>` stages, `sara sample --run`, the report's row
labels, the sweep planner) takes them from here.

Per run, `Run.params` are the params keys it reads (dvc.yaml `params`, the MLflow params of `train_dit/<run>`) and
`Run.inputs(params)` the upstream outputs it reads (dvc.yaml data deps, the resume fingerprint). Changing SARA's
params (trd, aligner, ...) therefore never makes SFT stale. No torch here: the pipeline generator imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from sara.config import MethodName, Params, RoutingOp

# params every run reads: the data it trains on, the base model, the schedule, the scale tag and seed
COMMON_PARAMS = ("project", "data", "dit", "train")
# params read beyond COMMON_PARAMS, per method
METHOD_PARAMS: dict[str, tuple[str, ...]] = {
    "sft": (),
    "videorepa": ("vfm", "trd", "methods.videorepa"),
    "moalign": ("vfm", "trd", "methods.moalign"),
    "sara": ("vfm", "text", "aligner", "masks", "trd"),
}
ROUTING_OPS: tuple[str, ...] = get_args(RoutingOp)  # none, and, or, xor
METHOD_LABEL = {"sft": "SFT", "videorepa": "VideoREPA", "moalign": "MoAlign", "sara": "SARA"}  # report rows


@dataclass(frozen=True)
class Run:
    """One Stage 2 run: a method and, for sara only, its routing operator."""

    method: MethodName
    op: RoutingOp | None = None

    def __post_init__(self) -> None:
        if self.method not in METHOD_PARAMS:
            raise ValueError(f"unknown method {self.method!r}: expected one of {', '.join(METHOD_PARAMS)}")
        if self.method == "sara" and self.op not in ROUTING_OPS:
            raise ValueError(f"sara needs a routing operator in {', '.join(ROUTING_OPS)}, got {self.op!r}")
        if self.method != "sara" and self.op is not None:
            raise ValueError(f"only sara takes a routing operator, not {self.method}")

    @classmethod
    def parse(cls, name: str) -> "Run":
        """`sara-or` -> Run("sara", "or"); `sft` -> Run("sft"). Unknown names are refused with one clear error."""
        method, _, op = name.partition("-")
        if method not in METHOD_PARAMS:
            raise ValueError(f"unknown run {name!r}: expected one of sft, videorepa, moalign, sara-<op>")
        if method == "sara":
            if op not in ROUTING_OPS:
                raise ValueError(f"unknown run {name!r}: sara runs are sara-<op> with op in {', '.join(ROUTING_OPS)}")
            return cls("sara", op)  # type: ignore[arg-type]
        if op:
            raise ValueError(f"unknown run {name!r}: only sara takes a routing operator")
        return cls(method)  # type: ignore[arg-type]

    @property
    def name(self) -> str:
        return f"sara-{self.op}" if self.method == "sara" else self.method

    def __str__(self) -> str:
        return self.name

    @property
    def routing_op(self) -> str:
        """The operator as a sweep / MLflow tag sees it: `none` for methods without routing."""
        return self.op or "none"

    @property
    def label(self) -> str:
        """Row label of the report, `SARA (OR)` (the main run is relabelled "SARA" there)."""
        if self.method != "sara":
            return METHOD_LABEL[self.method]
        return f"SARA ({self.op if self.op == 'none' else str(self.op).upper()})"

    @property
    def report_cell(self) -> tuple[str, str]:
        """(method, routing operator) cell of the report's heatmap; `no TRD` for a run without auxiliary loss."""
        return METHOD_LABEL[self.method], "no TRD" if self.method == "sft" else self.routing_op

    @property
    def params(self) -> tuple[str, ...]:
        """Params keys the run reads: dvc.yaml `params` of `train_dit-<run>` and the MLflow params it logs."""
        return (*COMMON_PARAMS, *METHOD_PARAMS[self.method])

    @property
    def uses_saliency(self) -> bool:
        return self.method == "sara"

    def inputs(self, params: Params) -> tuple[str, ...]:
        """Upstream outputs the run reads (dvc.yaml data deps; hashed into the resume fingerprint)."""
        common = (params.data.out_dir, params.dit.base_dir)
        if self.method == "sft":
            return common
        target = (*common, params.pretrain.vfm.out_dir)  # the frozen TRD target (pretrained here at lab scale)
        return (*target, params.aligner.out_dir, params.masks.out_dir) if self.uses_saliency else target


# The runs the pipeline trains, samples, scores and reports, in the paper's row order.
DAG_RUNS: tuple[Run, ...] = (Run("sft"), Run("videorepa"), Run("moalign"), Run("sara", "and"), Run("sara", "or"), Run("sara", "xor"))
# Every valid run name (the DAG's plus the routing-free SARA ablation).
ALL_RUNS: tuple[Run, ...] = (*DAG_RUNS, Run("sara", "none"))
BASE = "base"  # the untrained base model: sampled and reported as the "Pretrained" row, never trained
SAMPLE_RUNS: tuple[str, ...] = (BASE, *(r.name for r in ALL_RUNS))  # valid `sara sample --run` values
DAG_SAMPLE_RUNS: tuple[str, ...] = (BASE, *(r.name for r in DAG_RUNS))  # the sample stages of the DAG


def dag_run_names() -> list[str]:
    return [r.name for r in DAG_RUNS]
