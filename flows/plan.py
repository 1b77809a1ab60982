"""Plan a sweep: which sweep points, which params overrides, which DVC stages each point runs.

A sweep point is one (method, routing operator, seed, lambda_TRD). Each point becomes one `dvc exp run --temp`
with `-S key=value` overrides; stages two or more points need and no swept key touches (data, masks, the aligner, ...)
are reproduced once beforehand in a shared experiment, so the points restore them from DVC's run cache instead of
recomputing them side by side. Everything here is pure: it reads files and returns data.
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from flows.dag import Dag
from sara.config import Params, ParamsError, params_from_dict
from sara.config import read_yaml as parse_params_yaml
from sara.runs import METHODS, MethodName, RoutingOp, Run

SEED_KEY = "train.seed"
LAM_TRD_KEY = "trd.lam_trd"


@dataclass(frozen=True)
class SweepPoint:
    run: Run  # the Stage 2 run; its per-run stages (`train_dit-<run>`, ...) are the point's targets
    seed: int
    lam_trd: float

    @property
    def method(self) -> MethodName:
        return self.run.method

    @property
    def op(self) -> str:
        """The routing operator as tags show it (sara.runs.NO_ROUTING for a method that takes none)."""
        return self.run.routing_op

    @property
    def label(self) -> str:
        return f"{self.run}/seed{self.seed}/lam{self.lam_trd:g}"

    def overrides(self) -> dict[str, Any]:
        # The point's own run is chosen by its targets (`train_dit-<run>`), not by a param.
        return {SEED_KEY: self.seed, LAM_TRD_KEY: self.lam_trd}


@dataclass(frozen=True)
class PointPlan:
    point: SweepPoint
    exp_name: str  # DVC experiment name (a git ref name)
    targets: list[str]  # `dvc exp run` targets
    stages: list[str]  # stages this point computes itself (the rest come from the shared experiment)
    overrides: dict[str, Any]  # every -S override of this point's experiment
    params: Params  # the effective, validated params the point's stages see


@dataclass(frozen=True)
class SweepPlan:
    sweep_id: str
    repo: Path
    experiment: str  # MLflow experiment name
    shared_targets: list[str]  # empty: no shared experiment
    shared_stages: list[str]
    shared_overrides: dict[str, Any]
    points: list[PointPlan] = field(default_factory=list)
    rerun_per_point: list[str] = field(default_factory=list)  # needed by several points, not restorable


def flatten_leaves(raw: Any, prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1, "c": [1]}}` -> `{"a.b": 1, "a.c": [1]}`: lists are leaves (DVC sets them whole)."""
    if isinstance(raw, dict):
        out: dict[str, Any] = {}
        for k, v in raw.items():
            out.update(flatten_leaves(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: raw}


def set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set `a.b.c` in a nested mapping in place; a path through a non-mapping is an error naming the key."""
    parts = key.split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ParamsError(f"override {key}: {'.'.join(parts[: i + 1])} is not a section")
        node = child
    node[parts[-1]] = value


def read_yaml(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise ParamsError(f"{what} not found: {path}")
    raw = parse_params_yaml(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{what} {path}: top level must be a mapping of sections")
    return raw


def params_file_overrides(repo: Path, params_file: str) -> dict[str, Any]:
    """The leaves of `params_file` that differ from the repository's params.yaml, as dotted overrides.

    DVC stages always read params.yaml; another file (configs/paper.yaml, a micro profile) reaches them as the
    `-S` overrides of its differences, which DVC then records with the experiment.
    """
    base = flatten_leaves(read_yaml(repo / "params.yaml", "params file"))
    path = Path(params_file)
    other = flatten_leaves(read_yaml(path if path.is_absolute() else repo / path, "params file"))
    return {k: v for k, v in other.items() if k not in base or base[k] != v}


def effective_params(base_raw: dict[str, Any], overrides: dict[str, Any], source: str) -> Params:
    raw = copy.deepcopy(base_raw)
    for key, value in overrides.items():
        set_dotted(raw, key, value)
    return params_from_dict(raw, source)


def dvc_value(value: Any) -> str:
    """Format an override for `dvc exp run -S key=value` (DVC parses the value as YAML)."""
    if isinstance(value, float) and math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    return json.dumps(value)  # JSON is YAML: lists, strings, numbers, booleans and null round-trip


def build_points(
    methods: list[MethodName], ops: list[RoutingOp], seeds: list[int], lam_trd: list[float]
) -> list[SweepPoint]:
    """The cartesian product; a method that takes no routing operator gets one point per seed and lam_trd."""
    if not methods or not seeds or not lam_trd:
        raise ParamsError("a sweep needs at least one method, one seed and one lam_trd value")
    if "sara" in methods and not ops:
        raise ParamsError("ops: method 'sara' needs at least one routing operator")
    points = []
    for method in dict.fromkeys(methods):
        runs = [Run(method, op) for op in dict.fromkeys(ops)] if METHODS[method].saliency else [Run(method)]
        for run in runs:
            for seed in dict.fromkeys(seeds):
                for lam in dict.fromkeys(lam_trd):
                    points.append(SweepPoint(run, seed, float(lam)))
    return points


def exp_name(sweep_id: str, point: SweepPoint) -> str:
    """A valid git ref name, unique within the sweep."""
    lam = f"{point.lam_trd:g}".replace(".", "p").replace("-", "m")
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"{sweep_id}-{point.run}-s{point.seed}-l{lam}")


def resolve_targets(dag: Dag, point: SweepPoint, templates: list[str] | None) -> list[str]:
    """Stages a point must reproduce.

    Explicit `templates` may use `{run}`, `{method}`, `{op}`, `{seed}`. Otherwise: the stages of dvc.yaml whose
    run is the point's run (`train_dit-sara-or`, `sample-sara-or`); while the DAG has no per-run
    stage yet, the whole pipeline (its leaves).
    """
    if templates:
        out = []
        for template in templates:
            name = template.format(run=point.run, method=point.method, op=point.op, seed=point.seed)
            if name not in dag.stages:
                raise ParamsError(
                    f"targets: {name!r} (from {template!r}) is not a stage of dvc.yaml; stages: {', '.join(dag.stages)}"
                )
            out.append(name)
        return out
    per_run = [s.name for s in dag.stages.values() if s.row == point.run]
    if per_run:
        return sorted(per_run)
    if _has_run_stages(dag):
        raise ParamsError(f"no stage of dvc.yaml is per-run for run {point.run.name!r} (method {point.method}, op {point.op})")
    return dag.leaves(set(dag.stages))


def _has_run_stages(dag: Dag) -> bool:
    """True once the DAG has per-run stages (`<stage>-<run>` for a run of the vocabulary)."""
    return any(isinstance(s.row, Run) for s in dag.stages.values())


def plan_sweep(
    repo: Path,
    dag: Dag,
    sweep_id: str,
    points: list[SweepPoint],
    params_file: str = "params.yaml",
    overrides: dict[str, Any] | None = None,
    targets: list[str] | None = None,
) -> SweepPlan:
    """Validate every point's params and split the DAG into a shared part and per-point parts."""
    frozen = sorted(s.name for s in dag.stages.values() if s.frozen)
    if frozen:  # a base carried in by scripts/lab_base_bundle.py: its outputs are in the work folder only
        raise ValueError(f"stages {', '.join(frozen)} are frozen (a carried base): a sweep's DVC experiments check "
                         "outputs out of DVC's cache, which does not hold theirs; sweep where the base was built")
    base_raw = read_yaml(repo / "params.yaml", "params file")
    global_overrides = {**params_file_overrides(repo, params_file), **(overrides or {})}
    effective_params(base_raw, global_overrides, f"{params_file} + overrides")  # fail fast on a bad global key

    # Keys whose value is not the same for every point; the rest of the point overrides are global too.
    per_point = [p.overrides() for p in points]
    keys = {k for o in per_point for k in o}
    missing = object()
    varying = {k for k in keys if len({json.dumps(o.get(k, missing), default=str) for o in per_point}) > 1}
    constant = {k: v for k, v in per_point[0].items() if k not in varying}
    shared_overrides = {**global_overrides, **constant}

    plans: list[tuple[SweepPoint, list[str], set[str], dict[str, Any], Params]] = []
    for point, own in zip(points, per_point):
        point_overrides = {**global_overrides, **own}
        params = effective_params(base_raw, point_overrides, f"sweep point {point.label}")
        point_targets = resolve_targets(dag, point, targets)
        closure = set(point_targets) | dag.ancestors(set(point_targets))
        plans.append((point, point_targets, closure, point_overrides, params))

    touched = {s.name for s in dag.stages.values() if any(s.reads(k) for k in varying)}
    touched |= dag.descendants(touched)
    # Shared: needed by two or more points and the same for all of them (no swept key reaches it). A stage that
    # only one point needs stays in that point's experiment.
    uses: dict[str, int] = {}
    for _, _, closure, _, _ in plans:
        for name in closure:
            uses[name] = uses.get(name, 0) + 1
    # A stage with a `persist` output cannot be restored from DVC's run cache: every point reruns it anyway, so
    # computing it (and what depends on it) in the shared experiment too would only add one more run.
    rerun = {s.name for s in dag.stages.values() if not s.restorable}
    rerun |= dag.descendants(rerun)
    shared = {name for name, n in uses.items() if n > 1} - touched - rerun
    experiment = plans[0][4].project.mlflow_experiment
    return SweepPlan(
        sweep_id=sweep_id,
        repo=repo,
        experiment=experiment,
        shared_targets=dag.leaves(shared) if shared else [],
        shared_stages=dag.topological(shared),
        shared_overrides=shared_overrides,
        rerun_per_point=dag.topological({n for n, k in uses.items() if k > 1} & rerun - touched),
        points=[
            PointPlan(
                point=point,
                exp_name=exp_name(sweep_id, point),
                targets=point_targets,
                stages=dag.topological(closure - shared),
                overrides=point_overrides,
                params=params,
            )
            for point, point_targets, closure, point_overrides, params in plans
        ],
    )
