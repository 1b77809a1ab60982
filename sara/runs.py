"""The run vocabulary: every name a Stage 2 run, a routing operator, a TRD target or a report row can have, and
what each method needs. The one place a run's identity is spelled; everything after the command line takes a `Run`.

A run is one method of Stage 2 (the paper's baselines), for the methods that route pairs by saliency (`sara`) one
routing operator, and for the methods that regress onto a frozen TRD target one target encoder:
    sft | videorepa | moalign | sara-<op>          (op: none | and | or | xor)
    <run>@<target>                                 (target other than the default `lab`, e.g. `sara-or@oracle`)
The default target is left out of the name, so `sara-or` is `sara-or@lab`. "No routing" (a method that takes no
operator: `Run.op is None`, tag `routing_op = NO_ROUTING`) is not the operator `none` (`sara-none`: the
constant pair weight of Eq. 2 inside SARA's loss).

Beside the runs, the evaluation reports two rows that are never trained: `oracle` (the renderer's ground truth of
the synthetic prompts, rubric only) and `base` (the untrained base model, the "Pretrained" row). `ROW_ORDER` is the
paper's row order of every table. `DAG_RUNS` is the list the pipeline trains, samples and reports (dvc.yaml is
written from it by `python -m sara.pipeline`); every other run of `ALL_RUNS` is valid outside the DAG.

No torch and no params model here (only its type): the config, the pipeline generator and the flows import this.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Literal, Union, get_args

if TYPE_CHECKING:
    from sara.config import Params

RoutingOp = Literal["none", "and", "or", "xor"]
ROUTING_OPS: tuple[str, ...] = get_args(RoutingOp)  # Eq. 8; `none` is the constant weight 1 (vanilla TRD, Eq. 2)
MethodName = Literal["sft", "videorepa", "moalign", "sara"]
NO_ROUTING = "no routing"  # the `routing_op` tag of a method that takes no operator (never the operator `none`)

# params every run reads: the data it trains on, the base model, the schedule, the scale tag and seed
COMMON_PARAMS = ("project", "data", "dit", "train")


@dataclass(frozen=True)
class Method:
    """What one Stage 2 method needs and reads. The auxiliary loss it computes: sara.methods."""

    name: MethodName
    label: str  # row label of the report
    params: tuple[str, ...]  # params keys read beyond COMMON_PARAMS (dvc.yaml `params`, MLflow params)
    target: bool  # regresses onto a frozen TRD target (the video encoder named by `Run.target`)
    saliency: bool  # routes pairs by the frozen Stage 1 aligner's saliency: takes a routing operator
    flow: bool  # optical flow (MoAlign's motion head)


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("sft", "SFT", (), target=False, saliency=False, flow=False),
    Method("videorepa", "VideoREPA", ("vfm", "trd", "methods.videorepa"), target=True, saliency=False, flow=False),
    Method("moalign", "MoAlign", ("vfm", "trd", "methods.moalign"), target=True, saliency=False, flow=True),
    Method("sara", "SARA", ("vfm", "text", "aligner", "masks", "trd"), target=True, saliency=True, flow=False),
)}
assert set(METHODS) == set(get_args(MethodName))


@dataclass(frozen=True)
class Target:
    """A frozen TRD target: the video encoder whose token relations a method's projected DiT tokens regress onto."""

    name: str
    label: str  # shown after the run's label when not the default
    params: tuple[str, ...]  # params keys read beyond the method's
    inputs: Callable[["Params"], tuple[str, ...]]  # upstream outputs it reads (dvc.yaml data deps)


DEFAULT_TARGET = "lab"
TARGETS: dict[str, Target] = {t.name: t for t in (
    # the encoder the pipeline provides: pretrained here at lab scale (pretrain.vfm.out_dir), tiny / local weights else
    Target("lab", "lab encoder", (), lambda p: (p.pretrain.vfm.out_dir,)),
    # the controls (sara/models/targets.py), on the lab encoder's grid and width, so they read its folder too:
    # the positive control, each token's membership over the clip's entities and background from the renderer's
    # ground-truth masks (in data.out_dir, which every run reads)
    Target("oracle", "oracle target", (), lambda p: (p.pretrain.vfm.out_dir,)),
    # the negative control, the lab encoder's architecture at random init (seeded by vfm.seed)
    Target("random", "random-init encoder", (), lambda p: (p.pretrain.vfm.out_dir,)),
)}
TARGET_MARK = "@"  # `sara-or@oracle`
assert not set(TARGETS) & set(ROUTING_OPS), "a target never spells like a routing operator (stage ids read both)"


@dataclass(frozen=True)
class Run:
    """One Stage 2 run: a method, its routing operator (saliency methods only) and its TRD target."""

    method: MethodName
    op: RoutingOp | None = None
    target: str = DEFAULT_TARGET

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}: expected one of {', '.join(METHODS)}")
        if self.spec.saliency and self.op not in ROUTING_OPS:
            raise ValueError(f"{self.method} needs a routing operator in {', '.join(ROUTING_OPS)}, got {self.op!r}")
        if not self.spec.saliency and self.op is not None:
            raise ValueError(f"only sara takes a routing operator, not {self.method}")
        if self.target not in TARGETS:
            raise ValueError(f"unknown TRD target {self.target!r}: expected one of {', '.join(TARGETS)}")
        if not self.spec.target and self.target != DEFAULT_TARGET:
            raise ValueError(f"{self.method} has no TRD target to replace (target {self.target!r})")

    @classmethod
    def parse(cls, name: str) -> "Run":
        """The one parser of run names: `sara-or` -> Run("sara", "or"); `sft` -> Run("sft");
        `sara-or@oracle` -> Run("sara", "or", "oracle"). Unknown names are refused with one clear error."""
        head, mark, target = name.partition(TARGET_MARK)
        method, _, op = head.partition("-")
        if method not in METHODS:
            raise ValueError(f"unknown run {name!r}: expected one of sft, videorepa, moalign, sara-<op>[@<target>]")
        if METHODS[method].saliency and op not in ROUTING_OPS:
            raise ValueError(f"unknown run {name!r}: {method} runs are {method}-<op> with op in {', '.join(ROUTING_OPS)}")
        if mark and (target not in TARGETS or target == DEFAULT_TARGET):
            others = [t for t in TARGETS if t != DEFAULT_TARGET]
            raise ValueError(f"unknown run {name!r}: the target after {TARGET_MARK!r} is one of "
                             f"{', '.join(others) or '(none registered)'}; the default {DEFAULT_TARGET!r} is left out")
        try:
            return cls(method, op or None, target or DEFAULT_TARGET)  # type: ignore[arg-type]
        except ValueError as err:
            raise ValueError(f"unknown run {name!r}: {err}") from None

    @property
    def spec(self) -> Method:
        return METHODS[self.method]

    @property
    def name(self) -> str:
        head = f"{self.method}-{self.op}" if self.op is not None else self.method
        return head if self.target == DEFAULT_TARGET else f"{head}{TARGET_MARK}{self.target}"

    def __str__(self) -> str:
        return self.name

    @property
    def stage_id(self) -> str:
        """The name as a DVC stage name may spell it (letters, digits, `_` and `-` only): `sara-or@oracle` ->
        `sara-or-oracle`; `Run.from_stage_id` reads it back (a target never spells like an operator)."""
        return self.name.replace(TARGET_MARK, "-")

    @classmethod
    def from_stage_id(cls, stage_id: str) -> "Run":
        head, _, last = stage_id.rpartition("-")
        named_target = head and last in TARGETS and last != DEFAULT_TARGET
        return cls.parse(f"{head}{TARGET_MARK}{last}" if named_target else stage_id)

    @property
    def routing_op(self) -> str:
        """The operator as a sweep / MLflow tag sees it: NO_ROUTING for a method that takes none."""
        return self.op if self.op is not None else NO_ROUTING

    @property
    def label(self) -> str:
        """Row label of the report, `SARA (OR)` (the main run is relabelled "SARA" there)."""
        label = self.spec.label if self.op is None else f"{self.spec.label} ({self.op if self.op == 'none' else self.op.upper()})"
        return label if self.target == DEFAULT_TARGET else f"{label} [{TARGETS[self.target].label}]"

    @property
    def report_cell(self) -> tuple[str, str]:
        """(method, weight) cell of the report's heatmap: `no TRD` without an auxiliary loss, `none` (constant pair
        weights, Eq. 2) for TRD without routing, else the operator."""
        if not self.spec.target:
            return self.spec.label, "no TRD"
        return self.spec.label, self.op or "none"

    @property
    def params(self) -> tuple[str, ...]:
        """Params keys the run reads: dvc.yaml `params` of `train_dit-<run>` and the MLflow params it logs."""
        target = TARGETS[self.target].params if self.spec.target else ()
        return tuple(dict.fromkeys((*COMMON_PARAMS, *self.spec.params, *target)))

    @property
    def uses_saliency(self) -> bool:
        return self.spec.saliency

    def inputs(self, params: "Params") -> tuple[str, ...]:
        """Upstream outputs the run reads (dvc.yaml data deps; hashed into the resume fingerprint)."""
        out = (params.data.out_dir, params.dit.base_dir)
        if self.spec.target:
            out += TARGETS[self.target].inputs(params)
        if self.spec.saliency:
            out += (params.aligner.out_dir, params.masks.out_dir)
        return tuple(dict.fromkeys(out))


def _every_run() -> tuple[Run, ...]:
    """Every valid run, in the paper's row order: methods as METHODS lists them, operators as ROUTING_OPS, the
    default target first."""
    out = []
    for target in TARGETS:
        for m in METHODS.values():
            if target != DEFAULT_TARGET and not m.target:
                continue
            for op in (ROUTING_OPS if m.saliency else (None,)):
                out.append(Run(m.name, op, target))  # type: ignore[arg-type]
    return tuple(out)


ALL_RUNS: tuple[Run, ...] = _every_run()
# The runs the pipeline trains, samples, scores and reports, in the paper's row order.
DAG_RUNS: tuple[Run, ...] = (Run("sft"), Run("videorepa"), Run("moalign"), Run("sara", "and"), Run("sara", "or"), Run("sara", "xor"))
MAIN_RUN = Run("sara", "or")  # the paper's "SARA" row (Tables 1, 2, 5, 6): the OR operator (report.main_run default)

# Rows of the evaluation that are not trained runs
ORACLE = "oracle"  # the renderer's ground truth of the synthetic prompts: rubric only, the "Real video" row
BASE = "base"  # the untrained base model: sampled and reported as the "Pretrained" row, never trained
Row = Union[Run, Literal["oracle", "base"]]  # what one per-run evaluation stage measures
ROW_LABEL = {ORACLE: "Real video (oracle)", BASE: "Pretrained Wan2.2", **{r.name: r.label for r in ALL_RUNS}}
ROW_ORDER: tuple[str, ...] = (ORACLE, BASE, *(r.name for r in ALL_RUNS))  # every table's rows, in this order
SAMPLE_RUNS: tuple[str, ...] = (BASE, *(r.name for r in ALL_RUNS))  # valid `sara sample --run` values
DAG_SAMPLE_RUNS: tuple[str, ...] = (BASE, *(r.name for r in DAG_RUNS))  # the sample stages of the DAG


def dag_run_names() -> list[str]:
    return [r.name for r in DAG_RUNS]


def matrix_runs(params: "Params") -> tuple[Run, ...]:
    """The runs the DAG of `params` trains (`matrix.runs`, validated by the params; DAG_RUNS by default)."""
    return tuple(Run.parse(name) for name in params.matrix.runs)


def parse_row(name: str) -> Row:
    """`oracle`, `base` or a run name -> the row (a `Run` for a run); anything else: one clear ValueError."""
    if name in (ORACLE, BASE):
        return name  # type: ignore[return-value]
    return Run.parse(name)


def row_label(name: str) -> str:
    return ROW_LABEL.get(name, name)


def row_rank(name: str) -> tuple[int, str]:
    """Sort key of a row name: the paper's order (ROW_ORDER), names it does not know last, alphabetically."""
    return (ROW_ORDER.index(name) if name in ROW_ORDER else len(ROW_ORDER), name)


def in_row_order(names: "list[str] | tuple[str, ...] | set[str]") -> list[str]:
    return sorted(names, key=row_rank)


def split_stage_name(name: str) -> tuple[str, str | None]:
    """`train_dit-sara-or` -> (`train_dit`, `sara-or`); `masks` -> (`masks`, None). Stage names never contain
    `-` themselves, so the first `-` starts the item (a run's `stage_id`, `base` or `oracle`)."""
    stage, sep, item = name.partition("-")
    return stage, (item if sep else None)


def stage_name(stage: str, row: Row) -> str:
    """The DVC stage of `stage` for one row: `train_dit-sara-or`, `sample-base`, `rubric-oracle`."""
    return f"{stage}-{row.stage_id if isinstance(row, Run) else row}"


def row_of_stage_item(item: str | None) -> Row | None:
    """The row a per-run stage's item names (`sara-or-oracle` -> Run("sara", "or", "oracle")), or None."""
    if item is None:
        return None
    if item in (ORACLE, BASE):
        return item  # type: ignore[return-value]
    try:
        return Run.from_stage_id(item)
    except ValueError:
        return None


def run_argument(name: str) -> Run:
    """argparse `type=` of a `--run` option taking a Stage 2 run: the parser's own message on a bad name."""
    try:
        return Run.parse(name)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None

